fn main() {
    std::process::exit(tachyon::cli::main());
}
