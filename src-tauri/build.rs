//! Generates the Tauri context (configuration, window assets, permissions).

fn main() {
    tauri_build::build();
}
