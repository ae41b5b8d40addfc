//! Routing a request's method id to the one of a server's services that has it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::Error;
use crate::service::Service;

/// The services a server hosts, and which of them has each method id.
///
/// Built once, before anything is served: two services with one name, or one method id in two
/// services, are refused then, naming both. Lookups never insert, so a peer choosing method
/// ids cannot degrade the table.
pub(crate) struct Router {
    services: Vec<Arc<dyn Service>>,
    /// Method id → index in `services`. Empty with a single service: it is asked directly,
    /// and answers "unknown method" itself, so one service costs no lookup.
    by_method: HashMap<u32, usize, BuildHasherDefault<IdHash>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.services.iter().map(|s| s.name())).finish()
    }
}

impl Router {
    /// Routes to `services`; an error names the two services that clash.
    pub(crate) fn new(services: Vec<Arc<dyn Service>>) -> Result<Router, Error> {
        if services.is_empty() {
            return Err(Error::Config("a server needs at least one service".to_owned()));
        }
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        let mut by_method = HashMap::default();
        for (i, service) in services.iter().enumerate() {
            if let Some(&other) = by_name.get(service.name()) {
                let (a, b) = (type_of(&services[other]), type_of(service));
                return Err(Error::Config(format!(
                    "two services are named {:?} ({a} and {b}): a server hosts each service name once",
                    service.name()
                )));
            }
            by_name.insert(service.name(), i);
            for (id, method) in service.methods() {
                if let Some(other) = by_method.insert(id, i) {
                    let other = &services[other];
                    let theirs = other.method_name(id).unwrap_or("?");
                    return Err(Error::Config(format!(
                        "method id {id:#010x} is both {}.{theirs} and {}.{method}: rename one",
                        other.name(),
                        service.name()
                    )));
                }
            }
        }
        if services.len() == 1 {
            by_method.clear();
        }
        Ok(Router { services, by_method })
    }

    /// The service that has `method`; `None` if none has it.
    #[inline]
    pub(crate) fn route(&self, method: u32) -> Option<&dyn Service> {
        if self.by_method.is_empty() {
            return self.services.first().map(|s| &**s);
        }
        self.by_method.get(&method).map(|&i| &*self.services[i])
    }

    /// The names of the services, for logs and the "unknown method" message.
    pub(crate) fn names(&self) -> String {
        let names: Vec<&str> = self.services.iter().map(|s| s.name()).collect();
        names.join(", ")
    }

    /// Whether only one service is hosted.
    pub(crate) fn is_single(&self) -> bool {
        self.services.len() == 1
    }
}

/// The service's name and its hosting type, to tell two services of one name apart.
fn type_of(service: &Arc<dyn Service>) -> String {
    format!("{} from {}", service.name(), service.type_name())
}

/// Method ids are already hashes (FNV-1a of the signature), fixed when the server is built:
/// they index the table as they are.
#[derive(Debug, Default, Clone, Copy)]
struct IdHash(u64);

impl Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u32(&mut self, n: u32) {
        // Spread over the high bits too, which hashbrown uses for its control bytes.
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
