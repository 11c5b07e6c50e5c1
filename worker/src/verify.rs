//! `opsync verify`: the setup page's "Continue" button, on the command line.

use crate::cli::VerifyArgs;
use crate::{exit, output};
use opsync_shared::scim::ScimClient;
use opsync_shared::verify::{VerifyReport, verify};
use serde_json::json;
use std::io::IsTerminal;

pub async fn run(args: VerifyArgs) -> u8 {
    let token = match args.token.read() {
        Ok(t) => t,
        Err(e) => return fail_input(args.json, "token_source", &e.to_string()),
    };
    let cfg = match args.bridge.client_config() {
        Ok(c) => c,
        Err(e) => {
            return fail_input(
                args.json,
                "ca_file",
                &format!("cannot read the CA file: {e}; check --ca-file"),
            );
        }
    };
    let mut client = match ScimClient::new(&args.url, token, cfg) {
        Ok(c) => c,
        Err(e) => return fail(args.json, &e),
    };
    let progress = !args.json && std::io::stderr().is_terminal();
    let result = verify(&mut client, |seen, total| {
        if progress {
            match total {
                Some(t) => eprint!("\rreading users: {seen}/{t}   "),
                None => eprint!("\rreading users: {seen}   "),
            }
        }
    })
    .await;
    if progress {
        eprint!("\r\x1b[K");
    }
    match result {
        Ok(report) => {
            print_report(&report, args.json);
            exit::OK
        }
        Err(e) => fail(args.json, &e),
    }
}

fn print_report(r: &VerifyReport, as_json: bool) {
    if as_json {
        println!("{}", json!({"ok": true, "report": r}));
        return;
    }
    println!("bridge      {}", r.bridge_url);
    println!(
        "SCIM base   {} (probed as {:?})",
        r.scim_base,
        if r.base_path.is_empty() {
            "as given"
        } else {
            r.base_path.as_str()
        }
    );
    println!(
        "version     {}",
        r.version
            .as_deref()
            .unwrap_or("unknown (no /health report)")
    );
    if !r.unhealthy_components.is_empty() {
        println!("unhealthy   {}", r.unhealthy_components.join(", "));
    }
    println!(
        "users       {} ({} active, {} suspended)",
        r.users_total, r.users_active, r.users_suspended
    );
    if r.complete_and_consistent {
        println!("snapshot    complete and consistent ({} pages)", r.pages);
    } else {
        let doubts: Vec<String> = r
            .doubts
            .iter()
            .map(|d| serde_json::to_string(d).unwrap_or_default())
            .collect();
        println!(
            "snapshot    NOT consistent ({} pages): {}",
            r.pages,
            doubts.join("; ")
        );
        println!(
            "            the directory changed while it was read, or the bridge paged oddly; a sync would not infer removals from it"
        );
    }
    println!("requests    {} ({} retried)", r.requests, r.retries);
    println!("took        {:.2} s", r.elapsed.as_secs_f64());
}

fn fail(as_json: bool, e: &opsync_shared::ScimError) -> u8 {
    tracing::debug!(error.kind = e.kind(), "verify failed");
    output::error(as_json, e.kind(), e.class().as_str(), &e.to_string());
    exit::for_scim(e)
}

fn fail_input(as_json: bool, kind: &str, message: &str) -> u8 {
    output::error(as_json, kind, "permanent", message);
    exit::BAD_INPUT
}
