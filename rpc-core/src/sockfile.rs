//! Unix socket files: put in place with their final mode, never over a live server's socket or
//! through a symlink, and removed when the server stops if they are still ours.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Times a path found taken is cleared and tried again before giving up: a stale file is
/// cleared in one; only servers racing for the same path need more.
const ATTEMPTS: usize = 3;

/// Binds a listening socket whose file is `path`, with permission bits `mode` if given.
///
/// The socket is not bound at `path` itself but in a fresh private directory (mode 0700)
/// beside it, given its mode there, and then hard-linked to `path`:
///
/// - No window with a wider mode: until the link, the socket can be reached only through the
///   private directory, which only our user may enter; the name `path` appears with the final
///   mode already set (and the socket already listening).
/// - Nothing is replaced or followed: `link` fails with `EEXIST` whatever is at `path`
///   (a live server's socket, a symlink, a dangling symlink), where `rename` would silently
///   replace it. A taken path is cleared only when it is a socket nothing listens on; see
///   [`clear_stale`].
/// - The private directory is in the same directory as `path`, so on the same filesystem, as a
///   hard link requires.
///
/// Costs of the scheme: the kernel keeps the name a socket was bound to, so the listener's own
/// address (which its clients see as the server's) is the private directory's path, gone once
/// bound; harmless, as nothing here reads it. And that path (the directory's and 6 bytes,
/// `/.r0/s`) must fit the limit on socket paths (107 bytes on Linux): a `path` within a byte
/// or two of the limit, with a file name under 5 bytes, is refused.
pub(crate) fn bind(
    path: &Path,
    mode: Option<u32>,
) -> io::Result<(std::os::unix::net::UnixListener, SocketFile)> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if path.file_name().is_none() {
        let why = format!("{} does not name a file", path.display());
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    // Clients connect by `path`: it must fit a socket address even though it is not bound.
    std::os::unix::net::SocketAddr::from_pathname(path)?;
    let private = PrivateDir::create(parent)?;
    let listener = std::os::unix::net::UnixListener::bind(private.socket()).map_err(|e| {
        if e.kind() != io::ErrorKind::InvalidInput {
            return e;
        }
        let why = format!(
            "{e}: the socket is bound first at {} ({} bytes)",
            private.socket().display(),
            private.socket().as_os_str().len()
        );
        io::Error::new(e.kind(), why)
    })?;
    if let Some(mode) = mode {
        fs::set_permissions(private.socket(), fs::Permissions::from_mode(mode))?;
    }
    let id = file_id(private.socket())?;
    for _ in 0..ATTEMPTS {
        match fs::hard_link(private.socket(), path) {
            Ok(()) => return Ok((listener, SocketFile { path: path.to_owned(), id })),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => clear_stale(path)?,
            Err(e) => return Err(e),
        }
    }
    Err(in_use("other servers keep taking the path"))
}

/// Removes what is at `path` if it is a stale socket file: a socket that refuses connections
/// (`ECONNREFUSED`), so nothing listens on it. Anything else is left alone and is
/// "address in use", with the reason: a server answers, or it is not a socket (a symlink is
/// never followed), or whether a server listens cannot be told. The last covers a live
/// server's socket we may not connect to (mode 0600, another user): connecting fails with
/// "permission denied", which says nothing about whether anyone listens.
///
/// `Ok` also when the path vanished meanwhile: the caller tries again.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !meta.file_type().is_socket() {
        return Err(in_use("the path exists and is not a socket"));
    }
    match probe(path) {
        Ok(Probe::Refused) => {}
        Ok(Probe::Vanished) => return Ok(()),
        Ok(Probe::Answered) => return Err(in_use("a server is listening on it")),
        Err(e) => {
            return Err(in_use(&format!(
                "a socket file is there and connecting to it to see whether a server listens \
                 failed ({e}); it is left alone, remove it if it is stale"
            )));
        }
    }
    // Another server may have replaced the stale file since we looked: remove only the file
    // we probed. (Two servers clearing the same stale path at once can still race between
    // this check and the removal; each then either binds or reports the path in use.)
    if file_id(path).ok() != Some((meta.dev(), meta.ino())) {
        return Ok(());
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What connecting to a socket file says about it.
enum Probe {
    /// Something accepted, or its backlog is full: a server is there.
    Answered,
    /// `ECONNREFUSED`: nothing listens.
    Refused,
    /// `ENOENT`: the file went away.
    Vanished,
}

/// Connects to `path` without blocking, so a live server with a full backlog cannot stall
/// the bind (a blocking connect would wait for room).
fn probe(path: &Path) -> io::Result<Probe> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::unix(path)?) {
        Ok(()) => Ok(Probe::Answered),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Probe::Answered),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Probe::Refused),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Probe::Vanished),
        Err(e) => Err(e),
    }
}

fn in_use(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::AddrInUse, format!("address in use: {why}"))
}

fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))
}

/// A directory only our user may enter, holding the socket until it is linked into place;
/// removed with whatever name the socket still has in it when dropped.
struct PrivateDir {
    socket: PathBuf,
}

impl PrivateDir {
    /// The socket's name inside; short, as socket paths are limited to about 100 bytes.
    const SOCKET: &'static str = "s";

    /// Creates `.r0` in `parent`, or `.r1` if that is taken, and so on. The names are short,
    /// as the socket's path inside must fit the limit on socket paths; they need not be
    /// unique, as `mkdir` creates a name only if nobody has it: a name another server holds,
    /// or a dead one left behind, is skipped. `mkdir` never follows a symlink at the name,
    /// and the umask can only narrow 0700.
    fn create(parent: &Path) -> io::Result<PrivateDir> {
        let mut n = 0;
        loop {
            let dir = parent.join(format!(".r{n}"));
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(PrivateDir { socket: dir.join(Self::SOCKET) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.socket);
        if let Some(dir) = self.socket.parent() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Removes the socket file when the listener goes away, unless another server has replaced
/// it since (the file is recognised by device and inode).
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if file_id(&self.path).ok() == Some(self.id) {
            let _ = fs::remove_file(&self.path);
        }
    }
}
