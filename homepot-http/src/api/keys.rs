//! API key rotation and revocation. Device keys are issued and revoked through their device;
//! read and admin keys through `/api/v1/keys`. Every operation needs an admin key, and a
//! revocation takes effect with the next request (keys are looked up on every request).

use std::sync::Arc;

use homepot_core::ingest::device_json::parse_fleet_key_request;
use homepot_core::{DeviceId, Role};
use homepot_storage::{KeyId, KeyInfo};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::documented::FleetKeyRequest;
use super::{ApiTags, AppState, rfc3339};
use crate::auth::ApiKeyAuth;
use crate::body::JsonBody;
use crate::error::ApiError;

/// Key management (admin).
#[derive(Debug, Default)]
pub(crate) struct KeysApi;

/// A stored key, without its secret.
#[derive(Debug, Object)]
struct KeyView {
    /// Identifier, for revocation.
    key_id: i64,
    /// `admin`, `device` or `read`.
    role: String,
    /// The device a device key belongs to.
    #[oai(skip_serializing_if_is_none)]
    device_id: Option<String>,
    /// When it was issued (RFC 3339, UTC).
    created_at: String,
}

impl From<KeyInfo> for KeyView {
    fn from(k: KeyInfo) -> Self {
        Self {
            key_id: k.id.0,
            role: k.role.as_str().to_owned(),
            device_id: k.device_id.map(|d| d.to_string()),
            created_at: rfc3339(k.created_at),
        }
    }
}

/// A newly issued key with its secret.
#[derive(Debug, Object)]
struct IssuedKey {
    /// The key.
    #[oai(flatten)]
    key: KeyView,
    /// The secret. Shown only in this response.
    api_key: String,
}

/// Unrevoked keys, oldest first.
#[derive(Debug, Object)]
struct KeyList {
    /// The keys.
    keys: Vec<KeyView>,
    /// How many.
    count: usize,
}

#[derive(Debug, ApiResponse)]
enum IssueResponse {
    /// Issued. Existing keys stay valid until revoked, so a device can switch over first.
    #[oai(status = 201)]
    Created(Json<IssuedKey>),
}

#[derive(Debug, ApiResponse)]
enum RevokeResponse {
    /// Revoked: the key no longer authenticates.
    #[oai(status = 204)]
    Revoked,
}

/// Issues a key and answers with it, shown this once.
async fn issue(state: &AppState, role: Role, device_id: Option<DeviceId>) -> Result<IssueResponse, ApiError> {
    let (info, key) = state.homepot.issue_key(role, device_id).await?;
    Ok(IssueResponse::Created(Json(IssuedKey { key: KeyView::from(info), api_key: key.expose().to_owned() })))
}

#[OpenApi]
impl KeysApi {
    /// Issue another key for a device (rotation: issue, switch the device over, revoke the
    /// old key). Needs an admin key.
    #[oai(path = "/api/v1/devices/:device_id/keys", method = "post", tag = "ApiTags::Keys")]
    async fn issue_device_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Device identifier.
        device_id: Path<String>,
    ) -> Result<IssueResponse, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let device = state.homepot.registered_device(&device_id).await?;
        issue(&state, Role::Device, Some(device)).await
    }

    /// A device's unrevoked keys, without their secrets. Needs an admin key.
    #[oai(path = "/api/v1/devices/:device_id/keys", method = "get", tag = "ApiTags::Keys")]
    async fn device_keys(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Device identifier.
        device_id: Path<String>,
    ) -> Result<Json<KeyList>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let device = state.homepot.registered_device(&device_id).await?;
        let keys: Vec<KeyView> = state.homepot.keys(Some(&device)).await?.into_iter().map(KeyView::from).collect();
        Ok(Json(KeyList { count: keys.len(), keys }))
    }

    /// Revoke one of a device's keys; it stops working at once. Needs an admin key.
    #[oai(path = "/api/v1/devices/:device_id/keys/:key_id", method = "delete", tag = "ApiTags::Keys")]
    async fn revoke_device_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Device identifier.
        device_id: Path<String>,
        /// Key identifier, from the key list.
        key_id: Path<i64>,
    ) -> Result<RevokeResponse, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let device = state.homepot.registered_device(&device_id).await?;
        state.homepot.revoke_key(KeyId(key_id.0), Some(&device)).await?;
        Ok(RevokeResponse::Revoked)
    }

    /// Issue a read-only or admin key (one that belongs to no device). Needs an admin key.
    #[oai(path = "/api/v1/keys", method = "post", tag = "ApiTags::Keys")]
    async fn issue_fleet_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: JsonBody<FleetKeyRequest>,
    ) -> Result<IssueResponse, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let role = parse_fleet_key_request(&body.bytes).map_err(|e| ApiError::invalid("body", e))?;
        issue(&state, role, None).await
    }

    /// The unrevoked read and admin keys, without their secrets. Needs an admin key.
    #[oai(path = "/api/v1/keys", method = "get", tag = "ApiTags::Keys")]
    async fn fleet_keys(&self, state: Data<&Arc<AppState>>, auth: ApiKeyAuth) -> Result<Json<KeyList>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let keys: Vec<KeyView> = state.homepot.keys(None).await?.into_iter().map(KeyView::from).collect();
        Ok(Json(KeyList { count: keys.len(), keys }))
    }

    /// Revoke a read or admin key; it stops working at once. The last admin key cannot be
    /// revoked unless `HOMEPOT_ADMIN_KEY` is configured. Needs an admin key.
    #[oai(path = "/api/v1/keys/:key_id", method = "delete", tag = "ApiTags::Keys")]
    async fn revoke_fleet_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Key identifier, from the key list.
        key_id: Path<i64>,
    ) -> Result<RevokeResponse, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        state.homepot.revoke_key(KeyId(key_id.0), None).await?;
        Ok(RevokeResponse::Revoked)
    }
}
