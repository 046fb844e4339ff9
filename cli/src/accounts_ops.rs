//! `ringfence accounts add|list|remove`: console operator accounts, with the admin credential.

use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{ApiClient, CliError};
use crate::commands::{AccountsCommand, ServerArgs};
use crate::output::{print_table, time_text};

/// One account as the server lists it.
#[derive(Deserialize, serde::Serialize)]
struct Account {
    name: String,
    role: String,
    created_ms: i64,
}

fn read_password(file: Option<&std::path::Path>) -> Result<String, CliError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Input { path: path.to_owned(), reason: e.to_string() })?,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line
        }
    };
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// Runs an accounts command.
pub async fn run(args: &ServerArgs, command: AccountsCommand, out: &mut impl Write) -> Result<(), CliError> {
    let client = ApiClient::new(args)?;
    match command {
        AccountsCommand::Add { name, role, password_file } => {
            let password = read_password(password_file.as_deref())?;
            let body = json!({"name": name, "role": role, "password": password});
            let _: Value = client.post("/console/api/accounts", &body).await?;
            writeln!(out, "added {role} account {name}")?;
        }
        AccountsCommand::List { json } => {
            let accounts: Vec<Account> = client.get("/console/api/accounts").await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&accounts).expect("serializes"))?;
            } else {
                let rows: Vec<Vec<String>> = accounts
                    .iter()
                    .map(|a| vec![a.name.clone(), a.role.clone(), time_text(a.created_ms)])
                    .collect();
                print_table(out, &["NAME", "ROLE", "CREATED"], &rows)?;
            }
        }
        AccountsCommand::Remove { name } => {
            client.delete(&format!("/console/api/accounts/{name}")).await?;
            writeln!(out, "removed account {name}")?;
        }
    }
    Ok(())
}
