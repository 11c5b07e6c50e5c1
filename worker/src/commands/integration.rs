//! `opsync integration ...`: the seed's setup flow (URL + token -> verify -> name -> save) and
//! the operator's day-to-day management.

use crate::cli::{
    AddArgs, IdArgs, IntegrationCommand, ListArgs, SetPlanArgs, SetSeatsArgs, UpdateTokenArgs,
};
use crate::{exit, output};
use opsync_shared::scim::ScimClient;
use opsync_shared::store::{self, Integration, NewIntegration};
use opsync_shared::verify;
use serde_json::json;
use uuid::Uuid;

pub async fn run(cmd: IntegrationCommand) -> u8 {
    match cmd {
        IntegrationCommand::Add(a) => add(a).await,
        IntegrationCommand::List(a) => list(a).await,
        IntegrationCommand::Show(a) => show(a).await,
        IntegrationCommand::UpdateToken(a) => update_token(a).await,
        IntegrationCommand::SetSeats(a) => set_seats(a).await,
        IntegrationCommand::SetPlan(a) => set_plan(a).await,
        IntegrationCommand::Disable(a) => set_status(a, "disabled").await,
        IntegrationCommand::Enable(a) => set_status(a, "active").await,
        IntegrationCommand::Remove(a) => remove(a).await,
        IntegrationCommand::ReleaseRemovals(a) => release_removals(a).await,
    }
}

fn seats(n: Option<u32>) -> Option<i32> {
    n.map(|s| s.min(i32::MAX as u32) as i32)
}

async fn add(a: AddArgs) -> u8 {
    let token = match super::token(&a.token, a.json) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let keyring = match super::keyring(&a.key, a.json) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let cfg = match super::client_config(&a.bridge, a.json) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut client = match ScimClient::new(&a.url, token.clone(), cfg) {
        Ok(c) => c,
        Err(e) => {
            output::error(a.json, e.kind(), e.class().as_str(), &e.to_string());
            return exit::for_scim(&e);
        }
    };
    let bridge_url = client.root().to_string();
    // The same check as `opsync verify`: a bridge that fails it is not saved.
    let mut scim_base = None;
    let mut report = None;
    if !a.no_verify {
        match verify::verify(&mut client, |_, _| {}).await {
            Ok(r) => {
                scim_base = Some(r.scim_base.clone());
                report = Some(r);
            }
            Err(e) => {
                output::error(
                    a.json,
                    e.kind(),
                    e.class().as_str(),
                    &format!("{e} (not saved; --no-verify saves anyway)"),
                );
                return exit::for_scim(&e);
            }
        }
    }
    let id = Uuid::new_v4();
    let sealed = keyring.seal(&token, id);
    let result = super::with_conn(&a.db, a.json, async |conn| {
        store::insert_integration(
            conn,
            &NewIntegration {
                id,
                name: &a.name,
                bridge_url: &bridge_url,
                scim_base: scim_base.as_deref(),
                token: &sealed,
                purchased_seats: seats(a.seats),
            },
        )
        .await
    })
    .await;
    if let Err(code) = result {
        return code;
    }
    if a.json {
        println!(
            "{}",
            json!({"ok": true, "id": id, "name": a.name, "bridge_url": bridge_url, "scim_base": scim_base, "verify": report})
        );
    } else {
        println!("{id}");
        if let Some(r) = report {
            eprintln!(
                "saved \"{}\": {} users ({} active, {} suspended) at {}",
                a.name, r.users_total, r.users_active, r.users_suspended, r.scim_base
            );
        }
    }
    exit::OK
}

fn integration_json(i: &Integration, counts: Option<(i64, i64, i64)>) -> serde_json::Value {
    let mut v = serde_json::to_value(i).expect("serialisable");
    if let Some((active, suspended, removed)) = counts {
        v["members"] = json!({"active": active, "suspended": suspended, "removed": removed});
    }
    v["advice"] = json!(advice(i));
    v
}

/// What an operator should do about an integration's state, if anything.
fn advice(i: &Integration) -> Option<&'static str> {
    match i.status.as_str() {
        "needs_credentials" => Some(
            "the bridge rejected the token: run `opsync integration update-token ID --token-file F` with the regenerated token, then replay its dead-lettered jobs",
        ),
        "scim_disabled" => Some(
            "the bridge serves no SCIM API (Google Workspace): connect it to another identity provider, then `opsync integration enable ID`",
        ),
        "disabled" => Some("disabled by an operator: `opsync integration enable ID` to sync again"),
        _ => None,
    }
}

async fn list(a: ListArgs) -> u8 {
    let result = super::with_conn(&a.db, a.json, async |conn| {
        let all = store::list_integrations(conn).await?;
        // One query for every integration's counts, not one per integration.
        let mut counts = store::directory_counts_all(conn).await?;
        Ok(all
            .into_iter()
            .map(|i| {
                let c = counts.remove(&i.id).unwrap_or_default();
                (i, c)
            })
            .collect::<Vec<_>>())
    })
    .await;
    let rows = match result {
        Ok(r) => r,
        Err(code) => return code,
    };
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(i, c)| integration_json(i, Some(*c)))
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return exit::OK;
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(i, (active, suspended, _))| {
            vec![
                i.id.to_string(),
                i.name.clone(),
                i.status.clone(),
                format!("{active}/{}", output::opt(&i.purchased_seats)),
                suspended.to_string(),
                i.last_sync_at
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "never".into()),
                match (&i.last_sync_outcome, &i.last_sync_error_kind) {
                    (Some(o), Some(k)) => format!("{o} ({k})"),
                    (Some(o), None) => o.clone(),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "NAME",
            "STATUS",
            "ACTIVE/SEATS",
            "SUSPENDED",
            "LAST SYNC",
            "OUTCOME",
        ],
        &table,
    );
    for (i, _) in &rows {
        if let Some(adv) = advice(i) {
            println!("{}: {}", i.name, adv.replace("ID", &i.id.to_string()));
        }
    }
    exit::OK
}

async fn show(a: IdArgs) -> u8 {
    let result = super::with_conn(&a.db, a.json, async |conn| {
        let i = store::get_integration(conn, a.id).await?;
        let counts = store::directory_counts(conn, a.id).await?;
        let runs = store::recent_runs(conn, a.id, 10).await?;
        Ok((i, counts, runs))
    })
    .await;
    let (i, counts, runs) = match result {
        Ok(r) => r,
        Err(code) => return code,
    };
    if a.json {
        let mut v = integration_json(&i, Some(counts));
        v["recent_runs"] = serde_json::to_value(&runs).expect("serialisable");
        println!("{v}");
        return exit::OK;
    }
    println!("id          {}", i.id);
    println!("name        {}", i.name);
    println!("bridge      {}", i.bridge_url);
    println!("SCIM base   {}", output::opt(&i.scim_base));
    println!(
        "status      {}{}",
        i.status,
        i.status_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    if let Some(adv) = advice(&i) {
        println!("to do       {}", adv.replace("ID", &i.id.to_string()));
    }
    println!("seats       {}", output::opt(&i.purchased_seats));
    println!(
        "members     {} active, {} suspended, {} removed",
        counts.0, counts.1, counts.2
    );
    println!(
        "last sync   {} {}",
        output::opt(&i.last_sync_at),
        output::opt(&i.last_sync_outcome)
    );
    println!("token key   {}", i.token.key_id);
    if !runs.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    r.trigger.clone(),
                    r.outcome.clone(),
                    output::opt(&r.users_seen),
                    r.added.to_string(),
                    r.updated.to_string(),
                    r.deactivated.to_string(),
                    r.reactivated.to_string(),
                    r.removed.to_string(),
                    output::opt(&r.error_kind),
                ]
            })
            .collect();
        output::table(
            &[
                "STARTED",
                "TRIGGER",
                "OUTCOME",
                "USERS",
                "ADDED",
                "UPDATED",
                "DEACTIVATED",
                "REACTIVATED",
                "REMOVED",
                "ERROR",
            ],
            &rows,
        );
    }
    exit::OK
}

async fn update_token(a: UpdateTokenArgs) -> u8 {
    let token = match super::token(&a.token, a.json) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let keyring = match super::keyring(&a.key, a.json) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let sealed = keyring.seal(&token, a.id);
    change(&a.db, a.json, a.id, "token updated", async |c| {
        store::update_token(c, a.id, &sealed).await
    })
    .await
}

async fn set_seats(a: SetSeatsArgs) -> u8 {
    change(&a.db, a.json, a.id, "seats set", async |c| {
        store::set_seats(c, a.id, seats(a.seats)).await
    })
    .await
}

async fn set_plan(a: SetPlanArgs) -> u8 {
    let update = opsync_shared::insight::PlanUpdate {
        seats: seats(a.seats),
        price: a.price_per_seat.clone().zip(a.currency.clone()),
        billing_period: a.billing.clone(),
        renewal_date: a.renewal,
    };
    change(&a.db, a.json, a.id, "plan set", async |c| {
        opsync_shared::insight::set_plan(c, a.id, &update).await
    })
    .await
}

async fn set_status(a: IdArgs, status: &str) -> u8 {
    let what = if status == "active" {
        "enabled"
    } else {
        "disabled"
    };
    change(&a.db, a.json, a.id, what, async |c| {
        store::set_status(c, a.id, status, None).await
    })
    .await
}

async fn remove(a: IdArgs) -> u8 {
    change(&a.db, a.json, a.id, "removed", async |c| {
        store::delete_integration(c, a.id).await
    })
    .await
}

async fn release_removals(a: IdArgs) -> u8 {
    let what = "held removals released: the next sync applies them";
    change(&a.db, a.json, a.id, what, async |c| {
        store::set_release_removals(c, a.id).await
    })
    .await
}

/// One change to an integration, then its one-line outcome (or the error, printed).
async fn change(
    db: &crate::cli::DbArgs,
    json: bool,
    id: Uuid,
    what: &str,
    f: impl AsyncFnOnce(&mut deadpool_postgres::Client) -> Result<(), store::StoreError>,
) -> u8 {
    match super::with_conn(db, json, f).await {
        Ok(()) => {
            if json {
                println!("{}", json!({"ok": true, "id": id, "result": what}));
            } else {
                println!("{id}: {what}");
            }
            exit::OK
        }
        Err(code) => code,
    }
}
