//! ListCommands and ListCommandInvocations: validated filters, keyset pages, signed NextTokens.
//!
//! A page asks the store for one row more than MaxResults; only when that extra row exists is a
//! NextToken returned, so the last page never carries a token (clients stop on a missing token).

use std::collections::HashMap;

use fleetrun_core::command::{Command, ListedBody, ListedCommand};
use fleetrun_core::ids::CommandId;
use fleetrun_core::query::{CommandQuery, FilterError, ListKind, PageKey};
use fleetrun_wire::listing;
use fleetrun_wire::ssm::{ListCommandInvocationsResult, ListCommandsRequest};
use fleetrun_wire::validate::Violations;

use super::validate::{finish, instance_id, max_results, page_start};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

const DEFAULT_MAX_RESULTS: usize = 50;

/// Validates the request and builds the domain query.
fn build_query(kind: ListKind, req: &ListCommandsRequest) -> ApiResult<(CommandQuery, usize)> {
    let mut v = Violations::new();
    let limit = max_results(&mut v, req.max_results, 1, 50, DEFAULT_MAX_RESULTS);
    let mut q = CommandQuery::default();
    if let Some(id) = req.command_id.as_deref() {
        v.length("CommandId", id, 36, Some(36));
        q.command_id = CommandId::parse(id);
    }
    let filters = req.filters.as_deref();
    if let Some(f) = filters {
        v.count("Filters", "[...]", f.len(), 1, Some(5));
        for (i, filter) in f.iter().enumerate() {
            let path = format!("Filters.{}.member", i + 1);
            v.required(&format!("{path}.key"), filter.key.is_some());
            v.required(&format!("{path}.value"), filter.value.is_some());
            if let Some(value) = filter.value.as_deref() {
                v.length(&format!("{path}.value"), value, 1, Some(128));
            }
        }
    }
    finish(v)?;
    if let Some(id) = req.instance_id.as_deref() {
        q.instance_id = Some(instance_id(id)?);
    }
    for filter in filters.unwrap_or_default() {
        let (Some(key), Some(value)) = (filter.key.as_deref(), filter.value.as_deref()) else {
            continue;
        };
        q.add_filter(kind, key, value).map_err(filter_error)?;
    }
    q.check(kind).map_err(filter_error)?;
    Ok((q, limit))
}

fn filter_error(e: FilterError) -> ApiError {
    match e {
        FilterError::UnknownKey(key) => {
            ApiError::InvalidFilterKey(format!("The filter key '{key}' is not valid."))
        }
        FilterError::BadValue { key, value, expected } => ApiError::InvalidFilterValue(format!(
            "The filter value '{value}' is not valid for key {key}. Valid values: {expected}."
        )),
        FilterError::PendingWithInstance => ApiError::Validation(
            "You can't specify a Status filter value of Pending together with an InstanceId: a pending command has not reached any node yet.".into(),
        ),
    }
}

fn scope(op: &str, q: &CommandQuery) -> String {
    format!("{op}|{}", q.fingerprint())
}

/// ListCommands; answers the encoded body (see `wire::listing`).
pub async fn list_commands(st: AppState, req: ListCommandsRequest) -> ApiResult<Vec<u8>> {
    let (q, limit) = build_query(ListKind::Commands, &req)?;
    if let Some(id) = &q.command_id {
        if st.store.command(id).await?.is_none() {
            return Err(ApiError::InvalidCommandId(format!(
                "Command {id} does not exist."
            )));
        }
    }
    let scope = scope("ListCommands", &q);
    let after = page_start(&st, &scope, req.next_token.as_deref())?;
    let mut rows = st
        .store
        .list_commands(&q, after.as_ref(), limit + 1)
        .await?;
    let next_token = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|c| {
            st.tokens.encode(
                &scope,
                &PageKey {
                    requested_at: c.requested_at,
                    seq: c.seq,
                    instance_id: None,
                },
            )
        })
    } else {
        None
    };
    encode_page(rows, next_token.as_deref())
}

/// The page's body: each command's progress now, spliced with its fixed members as rendered at
/// SendCommand (or, for a command stored without a rendering, as encoded now).
fn encode_page(rows: Vec<ListedCommand>, next_token: Option<&str>) -> ApiResult<Vec<u8>> {
    let internal = |e: serde_json::Error| ApiError::Internal(e.to_string());
    let mut parts = Vec::with_capacity(rows.len());
    for row in rows {
        let aggregate = row.aggregate();
        let fixed = match row.body {
            ListedBody::Rendered(text) => text,
            ListedBody::Whole(command) => {
                listing::encode_fixed_members(&convert::command(*command)).map_err(internal)?
            }
        };
        parts.push((aggregate, fixed));
    }
    let commands: Vec<listing::ListedCommand<'_>> = parts
        .iter()
        .map(|(aggregate, fixed)| listing::ListedCommand {
            progress: convert::progress(aggregate),
            fixed_members: fixed,
        })
        .collect();
    listing::encode_list_commands(&commands, next_token).map_err(internal)
}

pub async fn list_command_invocations(
    st: AppState,
    req: ListCommandsRequest,
) -> ApiResult<ListCommandInvocationsResult> {
    let (q, limit) = build_query(ListKind::Invocations, &req)?;
    let details = req.details.unwrap_or(false);
    let scope = scope("ListCommandInvocations", &q);
    let after = page_start(&st, &scope, req.next_token.as_deref())?;
    let mut rows = st
        .store
        .list_invocations(&q, after.as_ref(), limit + 1)
        .await?;
    let next_token = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|i| {
            st.tokens.encode(
                &scope,
                &PageKey {
                    requested_at: i.requested_at,
                    seq: i.command_seq,
                    instance_id: Some(i.instance_id.to_string()),
                },
            )
        })
    } else {
        None
    };
    let mut commands: HashMap<CommandId, Command> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    let s3_base = st.config.s3.url_base(&st.config.region);
    for inv in &rows {
        if !commands.contains_key(&inv.command_id) {
            match st.store.command(&inv.command_id).await? {
                Some(c) => {
                    commands.insert(inv.command_id.clone(), c);
                }
                // Purged between the two reads: skip the orphan.
                None => continue,
            }
        }
        if let Some(c) = commands.get(&inv.command_id) {
            out.push(convert::invocation(&s3_base, c, inv, details));
        }
    }
    Ok(ListCommandInvocationsResult {
        command_invocations: out,
        next_token,
    })
}
