//! Key revocation with its one safety rule, shared by the API and the CLI.

use chrono::{DateTime, Utc};
use homepot_core::{DeviceId, Role};

use crate::{KeyId, KeyStore, StorageError};

/// Revokes key `id` (of `device`, or of no device), refusing to revoke the last stored admin
/// key when no admin key is configured outside storage: that would lock every operator out.
///
/// # Errors
/// [`StorageError::Conflict`] for the last admin key; [`StorageError::NotFound`] when no
/// such unrevoked key exists there.
pub async fn revoke_key<S: KeyStore + ?Sized>(
    store: &S,
    id: KeyId,
    device: Option<&DeviceId>,
    admin_configured: bool,
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    if device.is_none() && !admin_configured {
        let fleet = store.keys(None).await?;
        let mut admins = fleet.iter().filter(|k| k.role == Role::Admin);
        if let (Some(only), None) = (admins.next(), admins.next())
            && only.id == id
        {
            return Err(StorageError::conflict("the last admin key"));
        }
    }
    store.revoke_key(id, device, now).await
}
