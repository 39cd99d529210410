use zenoh::Wait;
fn main() {
    let s = zenoh::open(zenoh::Config::default()).wait().unwrap();
    drop(s);
}
