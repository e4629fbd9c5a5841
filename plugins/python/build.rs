//! Records which Python the plugin is built against, and ties the library to that Python's
//! libpython.
//!
//! PyO3 picks the interpreter from `PYO3_PYTHON` (else the first `python3` on `PATH`) and links
//! `libpython3.X.so`. At run time the dynamic loader would look that library up by its soname in
//! the system's folders, which on a machine with two Pythons of the same minor version (a
//! pyenv or a source build beside the distribution's) can be another build than the one compiled
//! against. So the plugin gets an rpath to the build interpreter's library folder: it loads the
//! libpython it was built for. The version and the interpreter are recorded for the check at load
//! (`interpreter.rs`), which refuses another minor version with a message naming both.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
    let config = pyo3_build_config::get();
    let version = config.version();
    println!(
        "cargo:rustc-env=SOCKSERV_PYTHON_BUILT_MINOR={}.{}",
        version.major, version.minor
    );
    let executable = config.executable().unwrap_or("python3").to_string();
    let full = Command::new(&executable)
        .args(["-c", "import platform; print(platform.python_version())"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| format!("{}.{}", version.major, version.minor));
    println!("cargo:rustc-env=SOCKSERV_PYTHON_BUILT_VERSION={full}");
    println!("cargo:rustc-env=SOCKSERV_PYTHON_BUILT_EXECUTABLE={executable}");
    if let Some(lib_dir) = config.lib_dir() {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,{lib_dir}");
    }
}
