//! OpenLDAP: the content synchronization operation (RFC 4533) in
//! refreshOnly mode, answered by the syncprov overlay.
//!
//! A refresh from a cookie sends the entries changed since (with a Sync
//! State control, state add or modify), and then either the deletions
//! (refreshDeletes: Sync State delete, or syncIdSet intermediate responses
//! with refreshDeletes set; syncprov does this when its sessionlog covers
//! the cookie) or a present phase (every unchanged entry is named present,
//! one by one or by syncIdSet; whatever is not named is gone). The Sync
//! Done control of the final response carries the next cookie and says
//! which of the two it was.

use std::collections::HashSet;

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapDerefAliases, LdapFilter, LdapIntermediateResponse, LdapSearchRequest, LdapSearchScope,
    SyncRequestMode, SyncStateValue,
};

use super::{hex, unhex, Cursor, Delta, Fallback, Watched};
use crate::ber::{FrameError, TlvReader};
use crate::sync::error::SyncError;
use crate::sync::reader::DirectoryReader;
use crate::upstream::requests::response_control;
use crate::upstream::requests::SearchMessage;
use crate::upstream::UpstreamConn;

/// e-syncRefreshRequired (RFC 4533 §2.5): the cookie is too old.
const SYNC_REFRESH_REQUIRED: i64 = 4096;
/// unavailableCriticalExtension: no syncprov serves this database.
const UNAVAILABLE_CRITICAL_EXTENSION: i64 = 12;

/// The Sync Done control (RFC 4533 §2.4).
const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";

/// `syncDoneValue ::= SEQUENCE { cookie syncCookie OPTIONAL,
/// refreshDeletes BOOLEAN DEFAULT FALSE }`. Decoded here: ldap3_proto 0.9
/// reads a value without a cookie as refreshDeletes FALSE, which would
/// turn "nothing changed" into "everything is gone".
fn sync_done(value: &[u8]) -> Result<(Option<Vec<u8>>, bool), FrameError> {
    if value.is_empty() {
        return Ok((None, false));
    }
    let mut outer = TlvReader::new(value);
    let mut seq = outer
        .expect(0x30, "syncDoneValue is not a SEQUENCE")?
        .children();
    let mut cookie = None;
    let mut refresh_deletes = false;
    while !seq.is_empty() {
        let field = seq.next()?;
        match field.tag {
            0x04 if cookie.is_none() => cookie = Some(field.value.to_vec()),
            0x01 => refresh_deletes = field.value.first().is_some_and(|b| *b != 0),
            _ => return Err(FrameError::Malformed("unexpected field in syncDoneValue")),
        }
    }
    Ok((cookie, refresh_deletes))
}

/// What one refresh reported.
#[derive(Debug, Default)]
struct Refresh {
    delta: Vec<ldap3_proto::proto::LdapSearchResultEntry>,
    deleted: HashSet<String>,
    present: HashSet<String>,
    /// The last cookie seen, from a Sync State, an intermediate response or
    /// the Sync Done control.
    cookie: Option<Vec<u8>>,
    /// From the Sync Done control; None when it was missing.
    refresh_deletes: Option<bool>,
}

impl Refresh {
    /// Takes in one response of the refresh.
    fn visit(&mut self, message: SearchMessage) {
        match message {
            SearchMessage::Entry(entry, controls) => {
                let state = controls.into_iter().find_map(|c| match c {
                    LdapControl::SyncState {
                        state,
                        entry_uuid,
                        cookie,
                    } => Some((state, entry_uuid.to_string(), cookie)),
                    _ => None,
                });
                match state {
                    Some((SyncStateValue::Present, id, cookie)) => {
                        self.present.insert(id);
                        self.note(cookie);
                    }
                    Some((SyncStateValue::Delete, id, cookie)) => {
                        self.deleted.insert(id);
                        self.note(cookie);
                    }
                    Some((_, _, cookie)) => {
                        self.delta.push(entry);
                        self.note(cookie);
                    }
                    // An entry without its state is read as changed: a
                    // needless upsert at worst, never a lost change.
                    None => self.delta.push(entry),
                }
            }
            SearchMessage::Intermediate(response) => match response {
                LdapIntermediateResponse::SyncInfoNewCookie { cookie } => self.note(Some(cookie)),
                LdapIntermediateResponse::SyncInfoRefreshDelete { cookie, .. }
                | LdapIntermediateResponse::SyncInfoRefreshPresent { cookie, .. } => {
                    self.note(cookie)
                }
                LdapIntermediateResponse::SyncInfoIdSet {
                    cookie,
                    refresh_deletes,
                    syncuuids,
                } => {
                    let ids = syncuuids.iter().map(ToString::to_string);
                    if refresh_deletes {
                        self.deleted.extend(ids);
                    } else {
                        self.present.extend(ids);
                    }
                    self.note(cookie);
                }
                LdapIntermediateResponse::Raw { .. } => {}
            },
        }
    }

    fn note(&mut self, cookie: Option<Vec<u8>>) {
        if let Some(c) = cookie {
            if !c.is_empty() {
                self.cookie = Some(c);
            }
        }
    }
}

/// A refreshOnly search from `cookie` (none: from the beginning).
async fn refresh(
    conn: &mut UpstreamConn,
    request: LdapSearchRequest,
    cookie: Option<Vec<u8>>,
) -> Result<Result<Refresh, Fallback>, SyncError> {
    let control = LdapControl::SyncRequest {
        // Critical: a server without syncprov must refuse, not answer a
        // plain search that would pass for "nothing changed".
        criticality: true,
        mode: SyncRequestMode::RefreshOnly,
        cookie,
        reload_hint: false,
    };
    let mut refresh = Refresh::default();
    let (done, done_pdu) = conn
        .search_streamed(request, vec![control], |message| {
            refresh.visit(message);
            Ok(())
        })
        .await?;
    match done.code {
        0 => {}
        SYNC_REFRESH_REQUIRED => {
            return Ok(Err(Fallback(format!(
                "the directory asks for a full refresh (e-syncRefreshRequired): its sync \
                 history no longer reaches back to the cookie. {}",
                done.diagnostic
            ))))
        }
        UNAVAILABLE_CRITICAL_EXTENSION => {
            return Ok(Err(Fallback(
                "the directory does not offer syncrepl: load the syncprov overlay on this \
                 database to avoid walking it on every changes pull"
                    .into(),
            )))
        }
        code => {
            return Ok(Err(Fallback(format!(
                "the syncrepl refresh failed with result {code}: {}",
                done.diagnostic
            ))))
        }
    }
    let value = response_control(&done_pdu, SYNC_DONE_OID)
        .and_then(|found| found.map(|v| sync_done(v.unwrap_or_default())).transpose())
        .map_err(|e| conn.bad_response("search", e))?;
    if let Some((cookie, refresh_deletes)) = value {
        refresh.note(cookie);
        refresh.refresh_deletes = Some(refresh_deletes);
    }
    if refresh.refresh_deletes.is_none() {
        return Ok(Err(Fallback(
            "the directory answered the syncrepl refresh without a Sync Done control: \
             syncprov is loaded but not configured on this database"
                .into(),
        )));
    }
    Ok(Ok(refresh))
}

/// The cookie of a refresh of just the base entry: where syncprov stands.
pub async fn begin(
    reader: &DirectoryReader,
    conn: &mut UpstreamConn,
) -> Result<Result<Cursor, Fallback>, SyncError> {
    let request = LdapSearchRequest {
        base: reader.base_dn().to_string(),
        scope: LdapSearchScope::Base,
        aliases: LdapDerefAliases::Never,
        sizelimit: 0,
        timelimit: 0,
        typesonly: false,
        filter: LdapFilter::Present("objectClass".into()),
        attrs: vec!["1.1".into()],
    };
    Ok(match refresh(conn, request, None).await? {
        Ok(Refresh {
            cookie: Some(cookie),
            ..
        }) => Ok(Cursor::Syncrepl {
            cookie: hex(&cookie),
        }),
        Ok(_) => Err(Fallback(
            "the directory's syncrepl refresh gave no cookie".into(),
        )),
        Err(fallback) => Err(fallback),
    })
}

/// The entries changed since `cookie` among those `watched` names.
pub async fn since(
    reader: &DirectoryReader,
    watched: &Watched,
    conn: &mut UpstreamConn,
    cookie: &str,
) -> Result<Result<Delta, Fallback>, SyncError> {
    let Some(bytes) = unhex(cookie) else {
        return Ok(Err(Fallback("the recorded sync cookie is damaged".into())));
    };
    let request = LdapSearchRequest {
        base: reader.base_dn().to_string(),
        scope: LdapSearchScope::Subtree,
        aliases: LdapDerefAliases::Never,
        sizelimit: 0,
        timelimit: 0,
        typesonly: false,
        filter: watched.filter.clone(),
        attrs: watched.attrs.clone(),
    };
    let refresh = match refresh(conn, request, Some(bytes.clone())).await? {
        Ok(r) => r,
        Err(fallback) => return Ok(Err(fallback)),
    };
    tracing::debug!(
        changed = refresh.delta.len(),
        deleted = refresh.deleted.len(),
        present = refresh.present.len(),
        refresh_deletes = refresh.refresh_deletes,
        "syncrepl refresh"
    );
    // refreshDeletes FALSE: a present phase; what was not named is gone.
    let present = (refresh.refresh_deletes == Some(false)).then_some(refresh.present);
    Ok(Ok(Delta {
        changed: refresh.delta,
        deleted: refresh.deleted,
        present,
        cursor: Cursor::Syncrepl {
            // Nothing new to record: the old cookie still holds.
            cookie: hex(&refresh.cookie.unwrap_or(bytes)),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_done_values_with_and_without_their_optional_fields() {
        // As syncprov sends them when nothing changed: no cookie.
        assert_eq!(
            sync_done(&[0x30, 0x03, 0x01, 0x01, 0xff]).unwrap(),
            (None, true)
        );
        assert_eq!(
            sync_done(&[0x30, 0x05, 0x04, 0x03, b'a', b'b', b'c']).unwrap(),
            (Some(b"abc".to_vec()), false)
        );
        assert_eq!(
            sync_done(&[0x30, 0x08, 0x04, 0x03, b'a', b'b', b'c', 0x01, 0x01, 0xff]).unwrap(),
            (Some(b"abc".to_vec()), true)
        );
        assert_eq!(sync_done(&[0x30, 0x00]).unwrap(), (None, false));
        assert_eq!(sync_done(&[]).unwrap(), (None, false));
        assert!(sync_done(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
        assert!(sync_done(&[0x30, 0x05, 0x04]).is_err());
        assert!(sync_done(&[0x04, 0x00]).is_err());
    }
}
