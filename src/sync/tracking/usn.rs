//! Active Directory: polling by uSNChanged, as Microsoft documents it for
//! applications that track changes without DirSync rights.
//!
//! Every write on a domain controller takes the next number of that DC's
//! update sequence; an object's uSNChanged is the number of its last
//! change *on this DC*. A cursor records the DC's highestCommittedUSN and
//! its invocationId. The next pull reads the objects whose uSNChanged is
//! above it, and the tombstones (deleted objects, kept under CN=Deleted
//! Objects with their objectGUID, read with the Show Deleted control) above
//! it. The numbers mean nothing on another DC, or on this one restored from
//! a backup, and both show as another invocationId: then the pull compares
//! the whole directory and says why.
//!
//! Both searches run from the root of the naming context, not from
//! `base_dn`: an object moved out of `base_dn` is found there and becomes
//! a delete.

use std::collections::HashSet;

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::LdapFilter;

use super::{Cursor, Delta, Fallback, Watched};
use crate::auth::resolver::format_id;
use crate::config::DirectoryKind;
use crate::ldap::dn::Dn;
use crate::sync::error::SyncError;
use crate::sync::reader::{first_value, DirectoryReader};
use crate::upstream::UpstreamConn;

/// Where a domain controller stands.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DcState {
    /// dsServiceName: the DC's NTDS Settings object.
    dc: String,
    invocation_id: String,
    highest_usn: u64,
    /// The naming context that holds `base_dn` (the searches' root).
    root: String,
}

async fn base_entry(
    reader: &DirectoryReader,
    conn: &mut UpstreamConn,
    dn: &str,
    attrs: &[&str],
) -> Result<Option<ldap3_proto::proto::LdapSearchResultEntry>, SyncError> {
    let attrs = attrs.iter().map(|a| (*a).to_owned()).collect();
    let reply = reader.read_entry(conn, dn, attrs).await?;
    Ok(reply.entries.into_iter().next())
}

fn attr<'a>(entry: &'a ldap3_proto::proto::LdapSearchResultEntry, name: &str) -> Option<&'a [u8]> {
    first_value(&entry.attributes, name)
}

/// Reads the rootDSE and the DC's invocationId.
async fn dc_state(
    reader: &DirectoryReader,
    conn: &mut UpstreamConn,
) -> Result<Result<DcState, Fallback>, SyncError> {
    let Some(root_dse) = base_entry(
        reader,
        conn,
        "",
        &[
            "highestCommittedUSN",
            "dsServiceName",
            "defaultNamingContext",
        ],
    )
    .await?
    else {
        return Ok(Err(Fallback("the rootDSE could not be read".into())));
    };
    let text = |name| attr(&root_dse, name).and_then(|v| std::str::from_utf8(v).ok());
    let (Some(usn), Some(dc)) = (
        text("highestCommittedUSN").and_then(|v| v.trim().parse::<u64>().ok()),
        text("dsServiceName"),
    ) else {
        return Ok(Err(Fallback(
            "the rootDSE has no highestCommittedUSN or dsServiceName: is this an Active \
             Directory domain controller?"
                .into(),
        )));
    };
    let dc = dc.to_owned();
    let base = reader.base_dn();
    let root = text("defaultNamingContext")
        .and_then(|nc| Dn::parse(nc).ok())
        .filter(|nc| base.is_within(nc))
        .map_or_else(|| base.to_string(), |nc| nc.to_string());
    let invocation_id = base_entry(reader, conn, &dc, &["invocationId"])
        .await?
        .and_then(|e| {
            attr(&e, "invocationId").map(|v| format_id(DirectoryKind::ActiveDirectory, v))
        });
    let Some(invocation_id) = invocation_id else {
        return Ok(Err(Fallback(format!(
            "the invocationId of {dc} could not be read"
        ))));
    };
    Ok(Ok(DcState {
        dc,
        invocation_id,
        highest_usn: usn,
        root,
    }))
}

/// The DC's highest committed USN, with its identity.
pub async fn begin(
    reader: &DirectoryReader,
    conn: &mut UpstreamConn,
) -> Result<Result<Cursor, Fallback>, SyncError> {
    Ok(dc_state(reader, conn).await?.map(|s| Cursor::Usn {
        dc: s.dc,
        invocation_id: s.invocation_id,
        usn: s.highest_usn,
    }))
}

/// Why a cursor does not hold on the DC this pull reached, if it does not.
fn mismatch(cursor: &Cursor, now: &DcState) -> Option<String> {
    let Cursor::Usn {
        dc,
        invocation_id,
        usn,
    } = cursor
    else {
        return Some("the cursor is not a USN cursor".into());
    };
    if *invocation_id != now.invocation_id {
        return Some(format!(
            "the domain controller changed: the cursor was recorded on {dc} (invocationId \
             {invocation_id}), this pull reached {} (invocationId {}); USNs are local to one \
             DC, so this pull compares the whole directory",
            now.dc, now.invocation_id
        ));
    }
    if *usn > now.highest_usn {
        return Some(format!(
            "the domain controller's highest USN ({}) is below the cursor's ({usn}): it was \
             restored, so this pull compares the whole directory",
            now.highest_usn
        ));
    }
    None
}

/// The entries changed (among those `watched` names) and deleted since
/// `cursor`.
pub async fn since(
    reader: &DirectoryReader,
    watched: &Watched,
    conn: &mut UpstreamConn,
    cursor: &Cursor,
) -> Result<Result<Delta, Fallback>, SyncError> {
    let now = match dc_state(reader, conn).await? {
        Ok(s) => s,
        Err(fallback) => return Ok(Err(fallback)),
    };
    if let Some(reason) = mismatch(cursor, &now) {
        return Ok(Err(Fallback(reason)));
    }
    let Cursor::Usn { usn, .. } = cursor else {
        return Ok(Err(Fallback("the cursor is not a USN cursor".into())));
    };
    let above = LdapFilter::GreaterOrEqual("uSNChanged".into(), (usn + 1).to_string());
    let changed = reader
        .search_all(
            conn,
            &now.root,
            &LdapFilter::And(vec![watched.filter.clone(), above.clone()]),
            &watched.attrs,
            &[],
        )
        .await?;
    let tombstones = reader
        .search_all(
            conn,
            &now.root,
            &LdapFilter::And(vec![
                LdapFilter::Equality("isDeleted".into(), "TRUE".into()),
                above,
            ]),
            &["objectGUID".into()],
            &[LdapControl::ShowDeleted { criticality: true }],
        )
        .await;
    let tombstones = match tombstones {
        Ok(t) => t,
        Err(SyncError::Search {
            code, diagnostic, ..
        }) => {
            return Ok(Err(Fallback(format!(
                "deleted objects could not be read (result {code}: {diagnostic}); give the \
                 service account List Contents and Read Property on CN=Deleted Objects to \
                 find deletions without comparing the whole directory"
            ))))
        }
        Err(e) => return Err(e),
    };
    let deleted: HashSet<String> = tombstones
        .iter()
        .filter_map(|e| attr(e, "objectGUID"))
        .map(|v| format_id(DirectoryKind::ActiveDirectory, v))
        .collect();
    Ok(Ok(Delta {
        changed,
        deleted,
        present: None,
        cursor: Cursor::Usn {
            dc: now.dc,
            invocation_id: now.invocation_id,
            usn: now.highest_usn,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(invocation_id: &str, highest_usn: u64) -> DcState {
        DcState {
            dc: "CN=NTDS Settings,CN=DC2".into(),
            invocation_id: invocation_id.into(),
            highest_usn,
            root: "DC=example,DC=com".into(),
        }
    }

    #[test]
    fn a_cursor_holds_only_on_its_own_dc_and_never_ahead_of_it() {
        let cursor = Cursor::Usn {
            dc: "CN=NTDS Settings,CN=DC1".into(),
            invocation_id: "aaaa".into(),
            usn: 100,
        };
        assert_eq!(mismatch(&cursor, &state("aaaa", 100)), None);
        assert_eq!(mismatch(&cursor, &state("aaaa", 250)), None);
        let other = mismatch(&cursor, &state("bbbb", 250)).unwrap();
        assert!(
            other.contains("CN=DC1") && other.contains("bbbb"),
            "{other}"
        );
        assert!(mismatch(&cursor, &state("aaaa", 99))
            .unwrap()
            .contains("restored"));
        let syncrepl = Cursor::Syncrepl {
            cookie: "00".into(),
        };
        assert!(mismatch(&syncrepl, &state("aaaa", 1)).is_some());
    }
}
