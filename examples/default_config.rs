//! Prints the default configuration as TOML, every field with its default, to start a config
//! file from: `cargo run --example default_config > eventbatch.toml`.

fn main() {
    print!("{}", eventbatch::Config::default().to_toml());
}
