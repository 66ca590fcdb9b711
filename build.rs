//! Generates the gRPC API (`proto/codectx/v1/codectx.proto`) with tonic/prost, using the
//! protoc that the `protoc-bin-vendored` crate ships: nothing to install by hand.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("codectx_v1_descriptor.bin"))
        .compile_with_config(config, &["proto/codectx/v1/codectx.proto"], &["proto"])?;
    Ok(())
}
