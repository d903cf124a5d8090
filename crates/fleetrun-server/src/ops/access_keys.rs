//! fleetrun's administration API: create, list, disable/enable and delete API access keys, each
//! with one IAM-style identity policy (`FleetrunAdmin.*`, see `fleetrun_wire::admin`). Authorized
//! as `fleetrun:<Operation>` on `*`; the administrator key created on first start may do all of it.

use fleetrun_core::access::{
    generate_access_key_id, generate_secret_access_key, valid_user_name, AccessKey, AccessKeyStatus,
};
use fleetrun_core::clock::now_millis;
use fleetrun_policy::Policy;
use fleetrun_wire::admin::{
    AccessKeyMetadata, AccessKeyWithSecret, CreateAccessKeyRequest, CreateAccessKeyResult,
    DeleteAccessKeyRequest, Empty, ListAccessKeysRequest, ListAccessKeysResult,
    UpdateAccessKeyRequest,
};

use crate::audit::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The admin operations, run on behalf of `caller` (named in the audit log).
pub struct Admin {
    pub caller: Caller,
}

fn epoch_seconds(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

fn no_such_key(id: &str) -> ApiError {
    ApiError::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
}

impl Admin {
    pub async fn create(
        self,
        st: AppState,
        req: CreateAccessKeyRequest,
    ) -> ApiResult<CreateAccessKeyResult> {
        let user_name = req.user_name.unwrap_or_default();
        if !valid_user_name(&user_name) {
            return Err(ApiError::Validation(format!(
                "1 validation error detected: Value '{user_name}' at 'userName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]{{1,64}}"
            )));
        }
        let policy = match (req.policy_document.as_deref(), req.policy.as_deref()) {
            (Some(doc), None) => Policy::parse(doc)
                .map_err(|e| ApiError::MalformedPolicyDocument(e.to_string()))?,
            (None, Some("FullAccess")) => Policy::full_access(),
            (None, Some("ReadOnly")) => Policy::read_only(),
            (None, Some(other)) => {
                return Err(ApiError::Validation(format!(
                    "Policy '{other}' is not a built-in policy: use FullAccess or ReadOnly, or give PolicyDocument."
                )))
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::Validation(
                    "Give either PolicyDocument or Policy, not both.".into(),
                ))
            }
            (None, None) => {
                return Err(ApiError::Validation(
                    "A key needs a policy: give PolicyDocument or Policy (FullAccess, ReadOnly)."
                        .into(),
                ))
            }
        };
        let key = AccessKey {
            access_key_id: generate_access_key_id(),
            secret_access_key: generate_secret_access_key(),
            user_name,
            policy_json: policy.to_json(),
            status: AccessKeyStatus::Active,
            created_at: now_millis(),
        };
        st.store.create_access_key(key.clone()).await?;
        // The new key's secret goes to the caller only.
        audit!(self.caller, "CreateAccessKey", key_id = %key.access_key_id, key_user = %key.user_name, "access key created");
        Ok(CreateAccessKeyResult {
            access_key: AccessKeyWithSecret {
                access_key_id: key.access_key_id,
                secret_access_key: key.secret_access_key,
                user_name: key.user_name,
                status: key.status.as_str().into(),
                create_date: epoch_seconds(key.created_at),
            },
        })
    }

    pub async fn list(
        self,
        st: AppState,
        _req: ListAccessKeysRequest,
    ) -> ApiResult<ListAccessKeysResult> {
        let keys = st.store.access_keys().await?;
        Ok(ListAccessKeysResult {
            access_key_metadata: keys
                .into_iter()
                .map(|k| AccessKeyMetadata {
                    access_key_id: k.access_key_id,
                    user_name: k.user_name,
                    status: k.status.as_str().into(),
                    create_date: epoch_seconds(k.created_at),
                    policy_document: k.policy_json,
                })
                .collect(),
        })
    }

    pub async fn update(self, st: AppState, req: UpdateAccessKeyRequest) -> ApiResult<Empty> {
        let id = req.access_key_id.unwrap_or_default();
        let raw = req.status.unwrap_or_default();
        let status = AccessKeyStatus::parse(&raw).ok_or_else(|| {
            ApiError::Validation(format!(
                "1 validation error detected: Value '{raw}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
            ))
        })?;
        if !st.store.set_access_key_status(&id, status).await? {
            return Err(no_such_key(&id));
        }
        st.keys.forget(&id);
        audit!(self.caller, "UpdateAccessKey", key_id = %id, status = status.as_str(), "access key updated");
        Ok(Empty {})
    }

    pub async fn delete(self, st: AppState, req: DeleteAccessKeyRequest) -> ApiResult<Empty> {
        let id = req.access_key_id.unwrap_or_default();
        if id == self.caller.access_key_id {
            return Err(ApiError::Validation(
                "A key cannot delete itself; delete it with another administrator key.".into(),
            ));
        }
        if !st.store.delete_access_key(&id).await? {
            return Err(no_such_key(&id));
        }
        st.keys.forget(&id);
        audit!(self.caller, "DeleteAccessKey", key_id = %id, "access key deleted");
        Ok(Empty {})
    }
}
