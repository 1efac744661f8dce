//! `fuzz-replay CORPUS_ROOT`: runs every input of CORPUS_ROOT/<target>/ through each fuzz target.
//! Every target must have a non-empty corpus (run fuzz/run.sh first): a target with none fails
//! the replay rather than passing without having run. A crash names the target and the input.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

include!(concat!(env!("OUT_DIR"), "/targets.rs"));

/// The input being replayed, for the panic message.
static CURRENT: Mutex<Option<PathBuf>> = Mutex::new(None);

fn main() {
    let Some(root) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz-replay CORPUS_ROOT (e.g. fuzz/corpus, filled by fuzz/run.sh)");
        std::process::exit(2);
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(Some(p)) = CURRENT.lock().as_deref() {
            eprintln!("fuzz replay: crash on {}", p.display());
        }
        hook(info);
    }));
    let (mut inputs, mut failed) = (0usize, 0usize);
    for (name, run) in TARGETS {
        match replay(&root.join(name), *run) {
            Ok(n) => {
                println!("{name}: {n} inputs");
                inputs += n;
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                failed += 1;
            }
        }
    }
    println!("fuzz replay: {inputs} inputs through {} targets", TARGETS.len());
    println!("replay: {} passed, {failed} failed", TARGETS.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

fn replay(dir: &Path, run: Entry) -> Result<usize, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("no corpus at {}: {e}", dir.display()))?;
    let mut n = 0;
    for e in entries {
        let path = e.map_err(|e| e.to_string())?.path();
        let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        *CURRENT.lock().unwrap() = Some(path);
        // A panic here is a crash: the hook above names the input, and the process ends.
        run(&data);
        n += 1;
    }
    *CURRENT.lock().unwrap() = None;
    if n == 0 {
        return Err(format!("empty corpus at {}", dir.display()));
    }
    Ok(n)
}
