//! CreateActivation / DescribeActivations / DeleteActivation: how nodes are allowed to register.

use fleetrun_core::clock::now_millis;
use fleetrun_core::ids::{random_secret, ActivationId};
use fleetrun_core::node::{hash_secret, NewActivation, Tag};
use fleetrun_core::query::PageKey;
use fleetrun_wire::ssm::{
    self, epoch, CreateActivationRequest, CreateActivationResult, DeleteActivationRequest,
    DescribeActivationsRequest, DescribeActivationsResult,
};
use fleetrun_wire::validate::Violations;

use super::validate::{finish, max_results, page_start};
use crate::audit::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

const DAY_MS: i64 = 86_400_000;
const MAX_EXPIRY_MS: i64 = 30 * DAY_MS;
const TAG_PATTERN: &str = "^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$";

fn tag_text_ok(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

pub async fn create_activation(
    st: AppState,
    caller: Caller,
    req: CreateActivationRequest,
) -> ApiResult<CreateActivationResult> {
    let mut v = Violations::new();
    match req.iam_role.as_deref() {
        None => v.required("IamRole", false),
        Some(r) => v.length("IamRole", r, 0, Some(64)),
    }
    if let Some(d) = req.description.as_deref() {
        v.length("Description", d, 0, Some(256));
    }
    if let Some(n) = req.default_instance_name.as_deref() {
        v.length("DefaultInstanceName", n, 0, Some(256));
        v.pattern("DefaultInstanceName", n, tag_text_ok(n), TAG_PATTERN);
    }
    if let Some(l) = req.registration_limit {
        v.range("RegistrationLimit", l, 1, 1000);
    }
    let tags = req.tags.clone().unwrap_or_default();
    v.count("Tags", "[...]", tags.len(), 0, Some(1000));
    for (i, t) in tags.iter().enumerate() {
        let p = format!("Tags.{}.member", i + 1);
        v.length(&format!("{p}.Key"), &t.key, 1, Some(128));
        v.pattern(
            &format!("{p}.Key"),
            &t.key,
            tag_text_ok(&t.key),
            TAG_PATTERN,
        );
        v.length(&format!("{p}.Value"), &t.value, 0, Some(256));
        v.pattern(
            &format!("{p}.Value"),
            &t.value,
            tag_text_ok(&t.value),
            TAG_PATTERN,
        );
    }
    finish(v)?;
    let now = now_millis();
    let expires_at = match req.expiration_date {
        None => now + DAY_MS,
        Some(secs) => {
            let ms = (secs * 1000.0) as i64;
            if ms <= now {
                return Err(ApiError::InvalidParameters(
                    "ExpirationDate must be in the future.".into(),
                ));
            }
            if ms > now + MAX_EXPIRY_MS {
                return Err(ApiError::InvalidParameters(
                    "ExpirationDate can be at most 30 days in the future.".into(),
                ));
            }
            ms
        }
    };
    let id = ActivationId::generate();
    let code = random_secret(20);
    let iam_role = req.iam_role.unwrap_or_default();
    let registration_limit = req.registration_limit.unwrap_or(1) as u32;
    st.store
        .create_activation(NewActivation {
            id: id.clone(),
            code_hash: hash_secret(&code),
            description: req.description.unwrap_or_default(),
            default_instance_name: req.default_instance_name.unwrap_or_default(),
            iam_role: iam_role.clone(),
            registration_limit,
            expires_at,
            created_at: now,
            tags: tags
                .into_iter()
                .map(|t| Tag {
                    key: t.key,
                    value: t.value,
                })
                .collect(),
        })
        .await?;
    // The code is the activation's secret: only its id is logged.
    audit!(caller, "CreateActivation", activation_id = %id, registration_limit, iam_role = %iam_role, "activation created");
    Ok(CreateActivationResult {
        activation_id: id.to_string(),
        activation_code: code,
    })
}

pub async fn describe_activations(
    st: AppState,
    req: DescribeActivationsRequest,
) -> ApiResult<DescribeActivationsResult> {
    let mut v = Violations::new();
    let limit = max_results(&mut v, req.max_results, 1, 50, 50);
    finish(v)?;
    let filters = req.filters.unwrap_or_default();
    for f in &filters {
        match f.filter_key.as_deref() {
            Some("ActivationIds" | "DefaultInstanceName" | "IamRole") => {}
            other => {
                return Err(ApiError::InvalidFilter(format!(
                    "The filter key '{}' is not valid. Valid keys: ActivationIds, DefaultInstanceName, IamRole.",
                    other.unwrap_or("")
                )))
            }
        }
    }
    let scope = format!(
        "DescribeActivations|{:?}",
        filters
            .iter()
            .map(|f| (f.filter_key.clone(), f.filter_values.clone()))
            .collect::<Vec<_>>()
    );
    let after = page_start(&st, &scope, req.next_token.as_deref())?;
    let now = now_millis();
    let mut matching: Vec<_> = st
        .store
        .activations()
        .await?
        .into_iter()
        .filter(|a| {
            filters.iter().all(|f| {
                let values = f.filter_values.as_deref().unwrap_or_default();
                let field = match f.filter_key.as_deref() {
                    Some("ActivationIds") => a.id.as_str(),
                    Some("DefaultInstanceName") => a.default_instance_name.as_str(),
                    _ => a.iam_role.as_str(),
                };
                values.is_empty() || values.iter().any(|v| v == field)
            })
        })
        .filter(|a| match &after {
            None => true,
            Some(k) => {
                (a.created_at, a.id.as_str())
                    > (k.requested_at, k.instance_id.as_deref().unwrap_or(""))
            }
        })
        .collect();
    let next_token = if matching.len() > limit {
        matching.truncate(limit);
        matching.last().map(|a| {
            st.tokens.encode(
                &scope,
                &PageKey {
                    requested_at: a.created_at,
                    seq: 0,
                    instance_id: Some(a.id.to_string()),
                },
            )
        })
    } else {
        None
    };
    Ok(DescribeActivationsResult {
        activation_list: matching
            .into_iter()
            .map(|a| ssm::Activation {
                activation_id: a.id.to_string(),
                description: a.description,
                default_instance_name: a.default_instance_name,
                iam_role: a.iam_role,
                registration_limit: a.registration_limit,
                registrations_count: a.registrations_count,
                expiration_date: epoch(a.expires_at),
                expired: a.expires_at <= now,
                created_date: epoch(a.created_at),
                tags: a
                    .tags
                    .into_iter()
                    .map(|t| ssm::Tag {
                        key: t.key,
                        value: t.value,
                    })
                    .collect(),
            })
            .collect(),
        next_token,
    })
}

pub async fn delete_activation(
    st: AppState,
    caller: Caller,
    req: DeleteActivationRequest,
) -> ApiResult<serde_json::Value> {
    let raw = req.activation_id.as_deref().unwrap_or_default();
    let id = ActivationId::parse(raw).ok_or_else(|| {
        ApiError::InvalidActivationId(format!("Activation id '{raw}' is not valid."))
    })?;
    st.store.delete_activation(&id).await?;
    audit!(caller, "DeleteActivation", activation_id = %id, "activation deleted");
    Ok(serde_json::json!({}))
}
