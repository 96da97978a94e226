//! Refuse to build the H.264 encoder without assembly on x86.
//!
//! `openh264-sys2` compiles Cisco's OpenH264 from source and, when `nasm` is missing, quietly
//! falls back to plain C. The result works but encodes about three times slower, which on a
//! laptop turns a smooth 720p stream into dropped frames. A silent 3x regression is worse
//! than a failed build, so on x86/x86_64 we check that `nasm` runs and stop otherwise.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=NASM");
    println!("cargo:rerun-if-env-changed=OPENH264_NO_ASM");
    println!("cargo:rerun-if-env-changed=ONSTAGE_ALLOW_NO_NASM");

    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86" && arch != "x86_64" {
        return;
    }
    // Escape hatch for people who knowingly want the slow build (e.g. a quick CI lint job).
    if std::env::var_os("ONSTAGE_ALLOW_NO_NASM").is_some() {
        println!("cargo:warning=ONSTAGE_ALLOW_NO_NASM is set: OpenH264 may be built without assembly (about 3x slower encoding)");
        return;
    }
    if std::env::var_os("OPENH264_NO_ASM").is_some() {
        fail("OPENH264_NO_ASM is set, so OpenH264 would be built without assembly (about 3x slower encoding). Unset it, or set ONSTAGE_ALLOW_NO_NASM=1 to accept the slow build.");
    }

    // Same lookup as nasm-rs, which openh264-sys2 uses: $NASM if set, else `nasm` on PATH.
    let nasm = std::env::var_os("NASM").unwrap_or_else(|| "nasm".into());
    match Command::new(&nasm).arg("-v").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => fail(&format!(
            "`{} -v` exited with {}: {}",
            nasm.to_string_lossy(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => fail(&format!("cannot run `{}`: {e}", nasm.to_string_lossy())),
    }
}

fn fail(reason: &str) -> ! {
    eprintln!();
    eprintln!("error: onstage-media needs the `nasm` assembler on x86/x86_64.");
    eprintln!("  {reason}");
    eprintln!("  Without it OpenH264 silently builds without assembly and encodes ~3x slower.");
    eprintln!("  Fix: run `scripts/setup.sh`, or `sudo apt-get install nasm` (macOS: `brew install nasm`).");
    eprintln!();
    println!("cargo:warning=onstage-media: nasm not usable ({reason}); run scripts/setup.sh or `apt-get install nasm`");
    std::process::exit(1);
}
