//! Free loopback ports for processes the tests start with a fixed `listen:`.

use std::net::TcpListener;

/// `N` distinct free loopback ports. All `N` listeners are held until every port is picked,
/// so two calls in one test can never hand back the same port (the kernel may reuse a port
/// the moment its listener is dropped).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local addr").port())
}

/// One free loopback port.
pub fn free_port() -> u16 {
    let [port] = free_ports::<1>();
    port
}
