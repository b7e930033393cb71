//! `pgtunnel` on a pseudo-terminal of its own (`setsid --ctty`, the session leader, as
//! under a shell): what it shows, typing into it, Ctrl-C.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use nix::sys::termios::{self, LocalFlags};

/// How long one step (output appearing, the program exiting) may take before the test fails.
const STEP: Duration = Duration::from_secs(60);

/// `pgtunnel` on a terminal of its own.
pub struct OnTty {
    child: Child,
    master: File,
    /// The slave side, kept to read the terminal's settings (echo on or off).
    slave: File,
    /// Everything the terminal showed so far.
    screen: Arc<Mutex<Vec<u8>>>,
    /// Where [`OnTty::expect`] continues.
    seen: usize,
}

impl OnTty {
    pub fn spawn(home: &Path, args: &[&str]) -> OnTty {
        OnTty::spawn_with(home, args, &[])
    }

    /// Like [`OnTty::spawn`], with `env` added to the environment.
    pub fn spawn_with(home: &Path, args: &[&str], env: &[(&str, &str)]) -> OnTty {
        let size = Winsize {
            ws_row: 40,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&size, None).expect("openpty");
        let master = File::from(pty.master);
        let slave = File::from(pty.slave);
        let io = |f: &File| Stdio::from(f.try_clone().expect("dup the pty"));
        let child = Command::new("setsid")
            .arg("--ctty")
            .arg(env!("CARGO_BIN_EXE_pgtunnel"))
            .args(args)
            .env_clear()
            .env("HOME", home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TERM", "xterm")
            .envs(env.iter().copied())
            .stdin(io(&slave))
            .stdout(io(&slave))
            .stderr(io(&slave))
            .spawn()
            .expect("run pgtunnel under `setsid --ctty` (util-linux)");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup the pty");
        let sink = screen.clone();
        // Reads until the pty is closed (the test's end); detached.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        });
        OnTty {
            child,
            master,
            slave,
            screen,
            seen: 0,
        }
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen")).into_owned()
    }

    /// Waits until `text` appears after what was already seen.
    pub fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let screen = self.screen.lock().expect("screen").clone();
            if let Some(i) = find(&screen[self.seen.min(screen.len())..], text.as_bytes()) {
                self.seen += i + text.len();
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // It may have written the text just before exiting.
                let screen = self.screen.lock().expect("screen").clone();
                if let Some(i) = find(&screen[self.seen.min(screen.len())..], text.as_bytes()) {
                    self.seen += i + text.len();
                    return;
                }
                panic!(
                    "pgtunnel exited ({status}) without showing {text:?}:\n{}",
                    self.screen()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} did not appear within {} s:\n{}",
                STEP.as_secs(),
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `text` and Enter.
    pub fn type_line(&mut self, text: &str) {
        self.master
            .write_all(format!("{text}\r").as_bytes())
            .expect("type");
    }

    pub fn echo_on(&self) -> bool {
        termios::tcgetattr(&self.slave)
            .expect("tcgetattr")
            .local_flags
            .contains(LocalFlags::ECHO)
    }

    /// Types Ctrl-C.
    pub fn ctrl_c(&mut self) {
        self.master.write_all(b"\x03").expect("type Ctrl-C");
    }

    /// Ctrl-C on the terminal, then the exit code.
    pub fn interrupt(&mut self) -> i32 {
        self.ctrl_c();
        self.wait()
    }

    pub fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // A little more of the screen may still be in the pty.
                std::thread::sleep(Duration::from_millis(100));
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("pgtunnel did not exit:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OnTty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
