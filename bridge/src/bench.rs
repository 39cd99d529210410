pub fn run(_a: &BenchArgs) -> Result<(), String> {
    Err("todo".into())
}
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}
