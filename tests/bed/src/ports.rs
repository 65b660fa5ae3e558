//! Free loopback ports for the processes of one test process.

/// A free TCP port on 127.0.0.1: bound then released, and never the same port twice
/// in one test process. The kernel may hand a just-released port out again, so two
/// calls in a row (a node's admin and listener addresses) could otherwise collide.
/// 0 when none was found.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port == 0 {
            continue;
        }
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    0
}
