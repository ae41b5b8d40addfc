//! Unix socket files in shared directories: a live server's file is never replaced (not even
//! when we may not connect to it), a symlink is never followed, a stale file still is
//! replaced, and the file never exists with a wider mode than configured.
//!
//! Some tests need root, to own files as other users and run a child as one; without root
//! they print why and pass. A child is this test binary run again with one `#[ignore]`d test.
#![allow(clippy::unwrap_used)]

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rpc_core::{Error, Server, ServerConfig};

/// The owner of the live socket in the multi-user tests: nobody.
const OWNER: u32 = 65_534;
/// Another unprivileged user, who starts the second server.
const OTHER: u32 = 65_533;
/// Tells the child where to bind.
const CHILD_PATH: &str = "GOVERNANCE_CHILD_BIND_PATH";
/// Prefixes the child's one line of result.
const RESULT: &str = "BIND-RESULT ";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn unix(path: &Path) -> String {
    format!("unix:{}", path.display())
}

/// A directory every user may create and delete files in, like a shared runtime directory
/// (without the sticky bit, which would forbid deleting other users' files).
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A listening socket at `path` owned by `uid` with mode 0600, as another user's live server
/// would leave it.
fn live_socket_of(uid: u32, path: &Path) -> UnixListener {
    let listener = UnixListener::bind(path).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    listener
}

/// Asserts that `listener` still owns the file at `path` and accepts through it.
fn still_serves(listener: &UnixListener, path: &Path, inode: u64) {
    assert_eq!(std::fs::symlink_metadata(path).unwrap().ino(), inode, "the file was replaced");
    let _client = UnixStream::connect(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    listener.accept().expect("the original listener accepts the connection");
}

fn expect_address_in_use(result: Result<Server, Error>) -> String {
    match result {
        Err(Error::Bind { source, .. }) => {
            assert_eq!(source.kind(), ErrorKind::AddrInUse, "{source}");
            source.to_string()
        }
        Ok(server) => panic!("bound {} over something that was not ours", server.local_endpoint()),
        Err(other) => panic!("expected address in use, got {other}"),
    }
}

/// Only what the test put there: no private directory left behind.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs this binary's [`child_binds_the_path_and_reports`] as user `uid`; returns its line.
async fn bind_as(uid: u32, path: &Path) -> String {
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_binds_the_path_and_reports", "--ignored", "--nocapture"])
        .env(CHILD_PATH, path)
        .uid(uid)
        .gid(uid)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix(RESULT));
    let stderr = String::from_utf8_lossy(&out.stderr);
    line.unwrap_or_else(|| panic!("no result from the child:\n{stdout}\n{stderr}")).to_owned()
}

/// The child's half of the multi-user tests: binds `$GOVERNANCE_CHILD_BIND_PATH` and prints
/// the outcome. Does nothing when run without it.
#[tokio::test]
#[ignore = "run by other tests in a child process"]
async fn child_binds_the_path_and_reports() {
    let Some(path) = std::env::var_os(CHILD_PATH) else { return };
    match Server::bind(unix(Path::new(&path))).await {
        Ok(_) => println!("{RESULT}bound"),
        Err(Error::Bind { source, .. }) => println!("{RESULT}{:?}: {source}", source.kind()),
        Err(other) => println!("{RESULT}other error: {other}"),
    }
}

/// The bug this guards against: a second server, started by another user in a shared
/// directory, could not connect to the first one's 0600 socket ("permission denied"), took
/// that for "stale", deleted the live file and bound in its place.
#[tokio::test]
async fn a_live_socket_of_another_user_is_never_replaced() {
    if !is_root() {
        println!("skipped: needs root to own a socket as uid {OWNER} and bind as uid {OTHER}");
        return;
    }
    let dir = shared_dir();
    let path = dir.path().join("calc.sock");
    let live = live_socket_of(OWNER, &path);
    let inode = std::fs::symlink_metadata(&path).unwrap().ino();

    // Another unprivileged user may not connect to it, so cannot tell it is live.
    let outcome = bind_as(OTHER, &path).await;
    assert!(outcome.starts_with("AddrInUse: "), "the other user's bind: {outcome}");
    assert!(outcome.contains("ermission denied"), "says why: {outcome}");
    still_serves(&live, &path, inode);

    // Root may connect to it, and finds it live.
    let message = expect_address_in_use(Server::bind(unix(&path)).await);
    assert!(message.contains("a server is listening"), "{message}");
    still_serves(&live, &path, inode);
    assert_eq!(entries(dir.path()), ["calc.sock"]);
}

/// The counterpart: whoever may delete it replaces a socket file nothing listens on, even
/// another user's.
#[tokio::test]
async fn a_stale_socket_is_replaced_even_when_another_user_owned_it() {
    let dir = shared_dir();
    let path = dir.path().join("calc.sock");
    drop(UnixListener::bind(&path).unwrap()); // the file stays: nothing listens on it now
    if is_root() {
        std::os::unix::fs::chown(&path, Some(OWNER), Some(OWNER)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let server = Server::bind(unix(&path)).await.expect("the stale file is replaced");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.uid(), rustix::process::geteuid().as_raw(), "the new file is ours");
    let _client = UnixStream::connect(&path).expect("the new server is reachable");
    drop(server);
    assert!(!path.exists(), "removed when the server goes");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_symlink_at_the_path_is_neither_followed_nor_removed() {
    let dir = shared_dir();
    let elsewhere = tempfile::tempdir().unwrap();
    let stale = elsewhere.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let live = elsewhere.path().join("live.sock");
    let _live = UnixListener::bind(&live).unwrap();
    let targets: [(&str, PathBuf); 4] = [
        ("dangling", elsewhere.path().join("nothing-here")),
        ("to a stale socket", stale.clone()),
        ("to a live socket", live.clone()),
        ("to a directory", elsewhere.path().to_owned()),
    ];
    for (what, target) in targets {
        let path = dir.path().join("calc.sock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let message = expect_address_in_use(Server::bind(unix(&path)).await);
        assert!(message.contains("not a socket"), "symlink {what}: {message}");
        assert_eq!(std::fs::read_link(&path).unwrap(), target, "symlink {what} is intact");
        assert_eq!(entries(dir.path()), ["calc.sock"], "symlink {what}");
        std::fs::remove_file(&path).unwrap();
    }
    assert!(!elsewhere.path().join("nothing-here").exists(), "nothing created through it");
    assert!(stale.exists(), "the stale socket behind a symlink is not removed");
    let mode = std::fs::symlink_metadata(&stale).unwrap().mode();
    assert_ne!(mode & 0o777, 0o600, "nor chmodded through the link (it had the umask's mode)");
}

/// Each name that appeared in `dir` and whether its attributes changed afterwards, from the
/// inotify events queued on `inotify`.
fn events(inotify: &impl rustix::fd::AsFd) -> Vec<(String, &'static str)> {
    use rustix::fs::inotify::{ReadFlags, Reader};
    let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
    let mut reader = Reader::new(inotify, &mut buf);
    let mut seen = Vec::new();
    loop {
        let event = match reader.next() {
            Ok(event) => event,
            Err(rustix::io::Errno::WOULDBLOCK) => return seen,
            Err(e) => panic!("inotify: {e}"),
        };
        let name = event.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let flags = event.events();
        let kind = if flags.contains(ReadFlags::ATTRIB) {
            "attrib"
        } else if flags.contains(ReadFlags::CREATE) || flags.contains(ReadFlags::MOVED_TO) {
            "appeared"
        } else {
            continue;
        };
        if !flags.contains(ReadFlags::ISDIR) {
            seen.push((name, kind));
        }
    }
}

/// The file must appear with its final mode: created, then chmodded, it would be reachable
/// with the umask's wider mode in between. inotify shows that window as an attribute change
/// on a name that already existed; without one, no moment had another mode.
#[tokio::test]
async fn the_socket_file_never_has_a_wider_mode_than_configured() {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    for mode in [0o600, 0o660, 0o666] {
        let dir = shared_dir();
        let path = dir.path().join("calc.sock");
        let watch = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
        let flags = WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ATTRIB;
        inotify::add_watch(&watch, dir.path(), flags).unwrap();

        let mut config = ServerConfig::default();
        config.unix_mode = Some(mode);
        let server = Server::bind_with(unix(&path), config).await.unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "right after bind");
        assert_eq!(entries(dir.path()), ["calc.sock"], "the private directory is gone");
        let seen = events(&watch);
        assert_eq!(
            seen,
            [("calc.sock".to_owned(), "appeared")],
            "mode {mode:o}: the file appeared once and never changed"
        );
        drop(server);
    }
}

/// The socket is bound first inside a private directory beside the path: that detour must not
/// cost the longest paths a socket address can hold (107 bytes on Linux), nor let through a
/// longer one, which no client could connect to.
#[tokio::test]
async fn the_longest_socket_path_still_binds_and_a_longer_one_is_refused() {
    const LONGEST: usize = 107;
    let dir = tempfile::tempdir().unwrap();
    let name = "calc.sock";
    let pad = LONGEST - dir.path().as_os_str().len() - 1 - name.len() - 1;
    let sub = dir.path().join("d".repeat(pad));
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join(name);
    assert_eq!(path.as_os_str().len(), LONGEST);
    let server = Server::bind(unix(&path)).await.expect("the longest path binds");
    let _client = UnixStream::connect(&path).expect("and is reachable");
    drop(server);

    let longer = sub.join(format!("{name}x"));
    match Server::bind(unix(&longer)).await {
        Err(Error::Bind { source, .. }) => assert_eq!(source.kind(), ErrorKind::InvalidInput),
        other => panic!("expected a bind error for a {}-byte path, got {other:?}", LONGEST + 1),
    }
    assert_eq!(entries(&sub), Vec::<String>::new(), "nothing left behind");
}
