//! The `codectx` binary: parse the command line, run it, map errors to exit codes.

fn main() {
    std::process::exit(codectx::cli::main());
}
