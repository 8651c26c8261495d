//! Compiles the control-plane proto with the pure-Rust `protox`, so that a
//! fresh machine needs no `protoc` to build Floe.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/controller.proto");
    let descriptors = protox::compile(["proto/controller.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
