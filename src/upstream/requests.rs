//! Requests ldapgate makes on its own account on an upstream connection
//! (resolving sign-in IDs, verifying passwords, sync pulls): a simple bind
//! that asks for the password policy control, and searches that collect or
//! stream their entries. One request at a time per connection, within the
//! pool's `operation_timeout`; every error names the server.

use bytes::BytesMut;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapDerefAliases, LdapFilter, LdapIntermediateResponse, LdapMsg,
    LdapOp, LdapSearchRequest, LdapSearchResultEntry, LdapSearchScope,
};
use ldap3_proto::LdapCodec;
use tokio_util::codec::Decoder;

use super::checkin::Identity;
use super::connection::{Limit, Strays, UpstreamConn, OWN_MSGID};
use super::UpstreamError;
use crate::ber::{self, FrameError};
use crate::ldap::ppolicy::{decode_policy_response, PolicyResponse, PPOLICY_OID};
use crate::ldap::response::{self, ResultSummary};
use crate::ldap::tag;

/// What a bind answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindReply {
    pub code: i64,
    pub diagnostic: String,
    /// The password policy response control, when the server sent one.
    pub policy: Option<PolicyResponse>,
    /// The BindResponse as the directory sent it (message ID ldapgate's).
    pub pdu: bytes::Bytes,
}

/// One page of a paged search (RFC 2696).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub entries: Vec<LdapSearchResultEntry>,
    pub done: ResultSummary,
    /// Empty on the last page.
    pub cookie: Vec<u8>,
}

/// OID of the simple paged results control (RFC 2696).
pub const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

/// What a search returned.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchReply {
    pub entries: Vec<LdapSearchResultEntry>,
    pub done: ResultSummary,
}

/// One response of a streamed search, decoded with its controls.
#[derive(Debug)]
pub enum SearchMessage {
    Entry(LdapSearchResultEntry, Vec<LdapControl>),
    Intermediate(LdapIntermediateResponse),
}

impl UpstreamConn {
    /// A simple bind, asking (non-critically) for the password policy
    /// control. The connection counts as bound as someone from then on,
    /// unless the directory refused the bind, which leaves it anonymous
    /// (RFC 4511 §4.2.1).
    pub async fn bind_simple(
        &mut self,
        dn: &str,
        password: &str,
    ) -> Result<BindReply, UpstreamError> {
        const STAGE: &str = "bind";
        let request = response::encode(LdapMsg::new_with_ctrls(
            OWN_MSGID,
            LdapOp::BindRequest(LdapBindRequest {
                version: 3,
                dn: dn.to_owned(),
                cred: LdapBindCred::Simple(password.to_owned()),
            }),
            vec![LdapControl::PasswordPolicyRequest { criticality: false }],
        ));
        self.note_bind();
        let limit = Limit::Whole(self.settings().operation_timeout);
        let pdu = self
            .request(&request, STAGE, limit, Strays::Fail, |_, _| Ok(()))
            .await?;
        let summary = response::read_result(&pdu).map_err(|e| self.bad_response(STAGE, e))?;
        let policy = policy_control(&pdu).map_err(|e| self.bad_response(STAGE, e))?;
        if summary.code != 0 {
            self.set_identity(Identity::Anonymous);
        }
        Ok(BindReply {
            code: summary.code,
            diagnostic: summary.diagnostic,
            policy,
            pdu,
        })
    }

    /// A base-scope search of `dn` for `filter` with `attrs`: the entry when
    /// it exists and matches, none when it does not match, and `done.code`
    /// 32 (noSuchObject) when there is no entry.
    pub async fn read_base(
        &mut self,
        dn: &str,
        filter: LdapFilter,
        attrs: Vec<String>,
    ) -> Result<SearchReply, UpstreamError> {
        let limit = self.settings().operation_timeout;
        let request = LdapSearchRequest {
            base: dn.to_owned(),
            scope: LdapSearchScope::Base,
            aliases: LdapDerefAliases::Never,
            sizelimit: 1,
            timelimit: i32::try_from(limit.as_secs()).unwrap_or(i32::MAX),
            typesonly: false,
            filter,
            attrs,
        };
        self.search(request).await
    }

    /// A search; entries are decoded, references ignored.
    pub async fn search(
        &mut self,
        request: LdapSearchRequest,
    ) -> Result<SearchReply, UpstreamError> {
        const STAGE: &str = "search";
        let pdu = response::encode(LdapMsg::new(OWN_MSGID, LdapOp::SearchRequest(request)));
        let (entries, done) = self.collect_entries(&pdu, STAGE).await?;
        let done = response::read_result(&done).map_err(|e| self.bad_response(STAGE, e))?;
        Ok(SearchReply { entries, done })
    }

    /// A search whose responses go to `visit` as they arrive, decoded
    /// with their controls; returns the result and the SearchResultDone PDU
    /// (for [`response_control`]). `operation_timeout` bounds the wait for
    /// each response, not the whole search.
    pub async fn search_streamed(
        &mut self,
        request: LdapSearchRequest,
        controls: Vec<LdapControl>,
        mut visit: impl FnMut(SearchMessage) -> Result<(), FrameError>,
    ) -> Result<(ResultSummary, bytes::Bytes), UpstreamError> {
        const STAGE: &str = "search";
        let pdu = response::encode(LdapMsg::new_with_ctrls(
            OWN_MSGID,
            LdapOp::SearchRequest(request),
            controls,
        ));
        let max = self.settings().max_message_bytes;
        let silence = Limit::Silence(self.settings().operation_timeout);
        let done = self
            .request(
                &pdu,
                STAGE,
                silence,
                Strays::Fail,
                |op_tag, pdu| match op_tag {
                    tag::SEARCH_RESULT_ENTRY | tag::INTERMEDIATE_RESPONSE => {
                        match decode(pdu, max)? {
                            LdapMsg {
                                op: LdapOp::SearchResultEntry(entry),
                                ctrl,
                                ..
                            } => visit(SearchMessage::Entry(entry, ctrl)),
                            LdapMsg {
                                op: LdapOp::IntermediateResponse(response),
                                ..
                            } => visit(SearchMessage::Intermediate(response)),
                            _ => Err(FrameError::Malformed("undecodable search response")),
                        }
                    }
                    _ => Ok(()),
                },
            )
            .await?;
        let summary = response::read_result(&done).map_err(|e| self.bad_response(STAGE, e))?;
        Ok((summary, done))
    }

    /// One page of a paged search, with `controls` besides the paging one;
    /// pass the previous page's cookie (empty for the first). A server that
    /// ignores paging answers without the control: that is an error, not a
    /// last page, so a short export can never pass for a complete one.
    /// Until the last page is read the server holds a cursor on the
    /// connection ([`super::checkin::ConnState::open_cursor`]).
    pub async fn search_page(
        &mut self,
        request: LdapSearchRequest,
        page_size: i64,
        cookie: Vec<u8>,
        controls: &[LdapControl],
    ) -> Result<Page, UpstreamError> {
        const STAGE: &str = "paged search";
        let mut all = vec![LdapControl::SimplePagedResults {
            size: page_size,
            cookie,
        }];
        all.extend_from_slice(controls);
        let pdu = response::encode(LdapMsg::new_with_ctrls(
            OWN_MSGID,
            LdapOp::SearchRequest(request),
            all,
        ));
        let (entries, done) = self.collect_entries(&pdu, STAGE).await?;
        let bad = |e| self.bad_response(STAGE, e);
        let summary = response::read_result(&done).map_err(bad)?;
        let cookie = match response_control(&done, PAGED_RESULTS_OID).map_err(bad)? {
            Some(Some(value)) => paged_cookie(value).map_err(bad)?,
            _ if summary.code != 0 => Vec::new(),
            _ => {
                return Err(bad(FrameError::Malformed(
                    "paged search answered without the paged results control",
                )))
            }
        };
        self.set_open_cursor(!cookie.is_empty());
        Ok(Page {
            entries,
            done: summary,
            cookie,
        })
    }

    /// Sends a search and collects its decoded entries; returns them with
    /// the SearchResultDone PDU.
    async fn collect_entries(
        &mut self,
        pdu: &[u8],
        stage: &'static str,
    ) -> Result<(Vec<LdapSearchResultEntry>, bytes::Bytes), UpstreamError> {
        let mut entries = Vec::new();
        let max = self.settings().max_message_bytes;
        let limit = Limit::Whole(self.settings().operation_timeout);
        let done = self
            .request(pdu, stage, limit, Strays::Fail, |op_tag, pdu| {
                if op_tag == tag::SEARCH_RESULT_ENTRY {
                    entries.push(decode_entry(pdu, max)?);
                }
                Ok(())
            })
            .await?;
        Ok((entries, done))
    }
}

fn decode(pdu: &[u8], max: usize) -> Result<LdapMsg, FrameError> {
    let mut buf = BytesMut::from(pdu);
    match LdapCodec::new(Some(max), None).decode(&mut buf) {
        Ok(Some(msg)) => Ok(msg),
        _ => Err(FrameError::Malformed("undecodable response")),
    }
}

fn decode_entry(pdu: &[u8], max: usize) -> Result<LdapSearchResultEntry, FrameError> {
    match decode(pdu, max)? {
        LdapMsg {
            op: LdapOp::SearchResultEntry(entry),
            ..
        } => Ok(entry),
        _ => Err(FrameError::Malformed("undecodable search entry")),
    }
}

/// Finds a response control: None when absent, Some(None) when present
/// without a value.
pub fn response_control<'a>(
    pdu: &'a [u8],
    oid: &str,
) -> Result<Option<Option<&'a [u8]>>, FrameError> {
    let (_, _, controls) = ber::message_parts(pdu)?;
    let Some(controls) = controls else {
        return Ok(None);
    };
    let mut list = controls.children();
    while !list.is_empty() {
        let mut control = list.expect(0x30, "control is not a SEQUENCE")?.children();
        let control_type = control.expect(0x04, "controlType is not an OCTET STRING")?;
        if control_type.value != oid.as_bytes() {
            continue;
        }
        while !control.is_empty() {
            let field = control.next()?;
            if field.tag == 0x04 {
                return Ok(Some(Some(field.value)));
            }
        }
        return Ok(Some(None));
    }
    Ok(None)
}

/// Finds and decodes the password policy response control of a response.
fn policy_control(pdu: &[u8]) -> Result<Option<PolicyResponse>, FrameError> {
    match response_control(pdu, PPOLICY_OID)? {
        Some(Some(value)) => decode_policy_response(value).map(Some),
        Some(None) => Ok(Some(PolicyResponse::default())),
        None => Ok(None),
    }
}

/// `realSearchControlValue ::= SEQUENCE { size INTEGER, cookie OCTET STRING }`.
fn paged_cookie(value: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut outer = crate::ber::TlvReader::new(value);
    let mut seq = outer
        .expect(0x30, "paged results value is not a SEQUENCE")?
        .children();
    seq.expect(0x02, "paged results size is not an INTEGER")?;
    Ok(seq
        .expect(0x04, "paged results cookie is not an OCTET STRING")?
        .value
        .to_vec())
}
