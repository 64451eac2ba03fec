//! The directory's own change tracking, for changes pulls that do not walk
//! the whole directory: syncrepl refreshOnly against syncprov on OpenLDAP
//! ([`syncrepl`]), uSNChanged and tombstones on Active Directory ([`usn`]).
//!
//! A pull records a [`Cursor`] (where the directory's tracking stood when
//! it began) in its snapshot; the next changes pull asks the directory what
//! changed since that cursor and gets a [`Delta`]. When the directory cannot
//! answer from the cursor (syncprov gone, the sessionlog or the DC changed,
//! tombstones unreadable) the answer is a [`Fallback`] with the reason, and
//! the pull compares the whole directory with the snapshot instead.

pub mod syncrepl;
pub mod usn;

use std::collections::HashSet;

use ldap3_proto::proto::{LdapFilter, LdapSearchResultEntry};
use serde::{Deserialize, Serialize};

use super::error::SyncError;
use super::reader::DirectoryReader;
use crate::config::{ChangeTracking, DirectoryKind};
use crate::upstream::UpstreamConn;

/// Where a directory's change tracking stood, kept with a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Cursor {
    /// An RFC 4533 sync cookie, hex-encoded (it is opaque bytes).
    Syncrepl { cookie: String },
    /// The highest committed USN of one domain controller. USNs are local
    /// to a DC: the cursor only holds on the DC whose invocationId it names.
    Usn {
        /// The DC's dsServiceName, for messages.
        dc: String,
        invocation_id: String,
        usn: u64,
    },
}

/// What changed since a cursor, as the directory reports it.
#[derive(Debug)]
pub struct Delta {
    /// Objects, and entries that may hold objects, added or changed, as
    /// they are now. On AD they may lie outside `base_dn` (moved out of it).
    pub changed: Vec<LdapSearchResultEntry>,
    /// Ids the directory reported deleted or gone from scope (some may
    /// never have been delivered: those are ignored).
    pub deleted: HashSet<String>,
    /// After a syncrepl present phase: the ids of every tracked entry still
    /// there and unchanged; whatever the snapshot has besides these and the
    /// changed ones is gone.
    pub present: Option<HashSet<String>>,
    /// The cursor for the snapshot this pull leaves.
    pub cursor: Cursor,
}

/// Why a pull could not use the directory's change tracking; the pull
/// compares the whole directory instead and reports this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback(pub String);

/// How changes are found, as reported in a changes pull's end line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Syncrepl,
    Usn,
    Snapshot,
}

/// What a change tracker watches, and the attributes it reads the
/// entries it reports with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub filter: LdapFilter,
    pub attrs: Vec<String>,
}

impl Watched {
    /// The objects (`objects`, read with `object_attrs`) and the entries
    /// that may hold them, so that moving a container (`cn=staging`, not
    /// an organization) is reported too. OpenLDAP evaluates
    /// hasSubordinates in filters, syncprov's included, and hasSubordinates
    /// is read to tell which reported entries hold objects; AD has no such
    /// attribute, and holds objects in containers and organizational units.
    pub fn new(kind: DirectoryKind, objects: LdapFilter, object_attrs: Vec<String>) -> Watched {
        let ad = kind == DirectoryKind::ActiveDirectory;
        let holders = if ad {
            ["container", "organizationalUnit"]
                .map(|c| LdapFilter::Equality("objectClass".into(), c.into()))
                .to_vec()
        } else {
            vec![LdapFilter::Equality(
                "hasSubordinates".into(),
                "TRUE".into(),
            )]
        };
        let mut any = vec![objects];
        any.extend(holders);
        let mut attrs = object_attrs;
        if !ad {
            attrs.push("hasSubordinates".into());
        }
        Watched {
            filter: LdapFilter::Or(any),
            attrs,
        }
    }
}

/// The change tracking a directory offers, by its configured kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracker {
    Syncrepl,
    Usn,
    None,
}

impl Tracker {
    pub fn new(kind: DirectoryKind, setting: ChangeTracking) -> Tracker {
        match (setting, kind) {
            (ChangeTracking::Snapshot, _) => Tracker::None,
            (ChangeTracking::Auto, DirectoryKind::OpenLdap) => Tracker::Syncrepl,
            (ChangeTracking::Auto, DirectoryKind::ActiveDirectory) => Tracker::Usn,
            (ChangeTracking::Auto, DirectoryKind::Ds389 | DirectoryKind::Generic) => Tracker::None,
        }
    }

    /// Where the directory's tracking stands now, to be recorded before a
    /// pull walks the directory (changes made during the walk are then
    /// reported again next time, never lost). None when the directory does
    /// not track changes; the reason is logged.
    pub async fn begin(
        self,
        reader: &DirectoryReader,
        conn: &mut UpstreamConn,
    ) -> Result<Option<Cursor>, SyncError> {
        let found = match self {
            Tracker::None => return Ok(None),
            Tracker::Syncrepl => syncrepl::begin(reader, conn).await?,
            Tracker::Usn => usn::begin(reader, conn).await?,
        };
        Ok(match found {
            Ok(cursor) => Some(cursor),
            Err(Fallback(reason)) => {
                tracing::info!(%reason, "changes pulls will compare snapshots");
                None
            }
        })
    }

    /// What changed since `cursor` among the entries `watched` names.
    pub async fn since(
        self,
        reader: &DirectoryReader,
        watched: &Watched,
        conn: &mut UpstreamConn,
        cursor: &Cursor,
    ) -> Result<Result<Delta, Fallback>, SyncError> {
        match (self, cursor) {
            (Tracker::Syncrepl, Cursor::Syncrepl { cookie }) => {
                syncrepl::since(reader, watched, conn, cookie).await
            }
            (Tracker::Usn, Cursor::Usn { .. }) => usn::since(reader, watched, conn, cursor).await,
            (Tracker::None, _) => Ok(Err(Fallback(
                "change tracking is off for this directory".into(),
            ))),
            _ => Ok(Err(Fallback(
                "the snapshot was made with another kind of change tracking".into(),
            ))),
        }
    }

    /// The method a pull that got a delta used.
    pub fn method(self) -> Method {
        match self {
            Tracker::Syncrepl => Method::Syncrepl,
            Tracker::Usn => Method::Usn,
            Tracker::None => Method::Snapshot,
        }
    }
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex back to bytes; None for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let bytes = b"rid=000,csn=20261123072953.296264Z#000000#000#000000";
        assert_eq!(unhex(&hex(bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
        assert_eq!(unhex(""), Some(Vec::new()));
    }

    #[test]
    fn cursors_are_kept_as_tagged_json() {
        let c = Cursor::Usn {
            dc: "CN=NTDS Settings,CN=DC1".into(),
            invocation_id: "0f1e".into(),
            usn: 4242,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"method\":\"usn\""), "{text}");
        assert_eq!(serde_json::from_str::<Cursor>(&text).unwrap(), c);
    }

    #[test]
    fn trackers_watch_objects_and_the_entries_that_may_hold_them() {
        let objects = LdapFilter::Present("objectClass".into());
        let attrs = vec!["entryUUID".to_owned()];
        let openldap = Watched::new(DirectoryKind::OpenLdap, objects.clone(), attrs.clone());
        assert_eq!(
            openldap.filter,
            LdapFilter::Or(vec![
                objects.clone(),
                LdapFilter::Equality("hasSubordinates".into(), "TRUE".into()),
            ])
        );
        assert_eq!(openldap.attrs, ["entryUUID", "hasSubordinates"]);
        let ad = Watched::new(DirectoryKind::ActiveDirectory, objects.clone(), attrs);
        let class = |c: &str| LdapFilter::Equality("objectClass".into(), c.into());
        assert_eq!(
            ad.filter,
            LdapFilter::Or(vec![
                objects,
                class("container"),
                class("organizationalUnit")
            ])
        );
        assert_eq!(ad.attrs, ["entryUUID"]);
    }

    #[test]
    fn tracking_follows_kind_and_setting() {
        use DirectoryKind::*;
        assert_eq!(
            Tracker::new(OpenLdap, ChangeTracking::Auto),
            Tracker::Syncrepl
        );
        assert_eq!(
            Tracker::new(ActiveDirectory, ChangeTracking::Auto),
            Tracker::Usn
        );
        assert_eq!(Tracker::new(Generic, ChangeTracking::Auto), Tracker::None);
        assert_eq!(
            Tracker::new(OpenLdap, ChangeTracking::Snapshot),
            Tracker::None
        );
    }
}
