//! `webwarden`: the command-line front of the webwarden web filter.

fn main() -> std::process::ExitCode {
    webwarden::cli_main()
}
