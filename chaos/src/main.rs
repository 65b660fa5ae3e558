//! fulcrum-chaos: chaos scenarios and the benchmark driver.
fn main() {}
