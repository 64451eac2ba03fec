//! Requests ldapgate makes on its own account on an upstream connection
//! (resolving sign-in IDs, verifying passwords, sync pulls): a simple bind
//! that asks for the password policy control, and a search that collects
//! its entries. One request at a time per connection.

use std::time::Duration;

use bytes::BytesMut;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapDerefAliases, LdapFilter, LdapIntermediateResponse, LdapMsg,
    LdapOp, LdapSearchRequest, LdapSearchResultEntry, LdapSearchScope,
};
use ldap3_proto::LdapCodec;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tokio_util::codec::Decoder;

use super::connection::{read_pdu, ExchangeError, UpstreamConn};
use crate::ber::{self, FrameError};
use crate::ldap::ppolicy::{decode_policy_response, PolicyResponse, PPOLICY_OID};
use crate::ldap::response::{self, ResultSummary};
use crate::ldap::tag;

/// Message ID of ldapgate's own requests; they never overlap.
const MSGID: i32 = 7;

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

/// How long a request of ldapgate's own may take.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// The whole request, from sending it to its final response.
    Whole(Duration),
    /// Each response: a long search stays alive while the server keeps
    /// answering.
    Silence(Duration),
}

impl UpstreamConn {
    /// A simple bind, asking (non-critically) for the password policy control.
    pub async fn bind_simple(
        &mut self,
        dn: &str,
        password: &str,
        limit: Duration,
        max_message_bytes: usize,
    ) -> Result<BindReply, ExchangeError> {
        let request = response::encode(LdapMsg::new_with_ctrls(
            MSGID,
            LdapOp::BindRequest(LdapBindRequest {
                version: 3,
                dn: dn.to_owned(),
                cred: LdapBindCred::Simple(password.to_owned()),
            }),
            vec![LdapControl::PasswordPolicyRequest { criticality: false }],
        ));
        let pdu = self
            .send_and_await(&request, Limit::Whole(limit), max_message_bytes, |_, _| {
                Ok(())
            })
            .await?;
        let summary = response::read_result(&pdu).map_err(ExchangeError::Frame)?;
        let policy = policy_control(&pdu).map_err(ExchangeError::Frame)?;
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
        limit: Duration,
        max_message_bytes: usize,
    ) -> Result<SearchReply, ExchangeError> {
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
        self.search(request, limit, max_message_bytes).await
    }

    /// A search; entries are decoded, references ignored.
    pub async fn search(
        &mut self,
        request: LdapSearchRequest,
        limit: Duration,
        max_message_bytes: usize,
    ) -> Result<SearchReply, ExchangeError> {
        let pdu = response::encode(LdapMsg::new(MSGID, LdapOp::SearchRequest(request)));
        let (entries, done) = self.collect_entries(&pdu, limit, max_message_bytes).await?;
        let done = response::read_result(&done).map_err(ExchangeError::Frame)?;
        Ok(SearchReply { entries, done })
    }

    /// A search whose responses go to `visit` as they arrive, decoded
    /// with their controls; returns the result and the SearchResultDone PDU
    /// (for [`response_control`]). `silence` bounds the wait for each
    /// response, not the whole search.
    pub async fn search_streamed(
        &mut self,
        request: LdapSearchRequest,
        controls: Vec<LdapControl>,
        silence: Duration,
        max_message_bytes: usize,
        mut visit: impl FnMut(SearchMessage) -> Result<(), FrameError>,
    ) -> Result<(ResultSummary, bytes::Bytes), ExchangeError> {
        let pdu = response::encode(LdapMsg::new_with_ctrls(
            MSGID,
            LdapOp::SearchRequest(request),
            controls,
        ));
        let done = self
            .send_and_await(
                &pdu,
                Limit::Silence(silence),
                max_message_bytes,
                |op_tag, pdu| match op_tag {
                    tag::SEARCH_RESULT_ENTRY | tag::INTERMEDIATE_RESPONSE => {
                        match decode(pdu, max_message_bytes)? {
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
        let summary = response::read_result(&done).map_err(ExchangeError::Frame)?;
        Ok((summary, done))
    }

    /// One page of a paged search, with `controls` besides the paging one;
    /// pass the previous page's cookie (empty for the first). A server that
    /// ignores paging answers without the control: that is an error, not a
    /// last page, so a short export can never pass for a complete one.
    pub async fn search_page(
        &mut self,
        request: LdapSearchRequest,
        page_size: i64,
        cookie: Vec<u8>,
        controls: &[LdapControl],
        limit: Duration,
        max_message_bytes: usize,
    ) -> Result<Page, ExchangeError> {
        let mut all = vec![LdapControl::SimplePagedResults {
            size: page_size,
            cookie,
        }];
        all.extend_from_slice(controls);
        let pdu = response::encode(LdapMsg::new_with_ctrls(
            MSGID,
            LdapOp::SearchRequest(request),
            all,
        ));
        let (entries, done) = self.collect_entries(&pdu, limit, max_message_bytes).await?;
        let summary = response::read_result(&done).map_err(ExchangeError::Frame)?;
        let cookie =
            match response_control(&done, PAGED_RESULTS_OID).map_err(ExchangeError::Frame)? {
                Some(Some(value)) => paged_cookie(value).map_err(ExchangeError::Frame)?,
                _ if summary.code != 0 => Vec::new(),
                _ => {
                    return Err(ExchangeError::Frame(FrameError::Malformed(
                        "paged search answered without the paged results control",
                    )))
                }
            };
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
        limit: Duration,
        max_message_bytes: usize,
    ) -> Result<(Vec<LdapSearchResultEntry>, bytes::Bytes), ExchangeError> {
        let mut entries = Vec::new();
        let done = self
            .send_and_await(
                pdu,
                Limit::Whole(limit),
                max_message_bytes,
                |op_tag, pdu| {
                    if op_tag == tag::SEARCH_RESULT_ENTRY {
                        entries.push(decode_entry(pdu, max_message_bytes)?);
                    }
                    Ok(())
                },
            )
            .await?;
        Ok((entries, done))
    }

    /// Sends `request` and reads until its final response, which it
    /// returns; the responses before it go to `on_response` (with their
    /// operation tag) as they arrive.
    async fn send_and_await(
        &mut self,
        request: &[u8],
        limit: Limit,
        max_message_bytes: usize,
        mut on_response: impl FnMut(u8, &[u8]) -> Result<(), FrameError>,
    ) -> Result<bytes::Bytes, ExchangeError> {
        let silence = match limit {
            Limit::Silence(d) => Some(d),
            Limit::Whole(_) => None,
        };
        let work = async {
            self.stream
                .write_all(request)
                .await
                .map_err(ExchangeError::Io)?;
            self.stream.flush().await.map_err(ExchangeError::Io)?;
            loop {
                let read = read_pdu(&mut self.stream, &mut self.buf, max_message_bytes);
                let pdu = match silence {
                    Some(d) => timeout(d, read)
                        .await
                        .map_err(|_| ExchangeError::Timeout(d))??,
                    None => read.await?,
                };
                let h = ber::peek_pdu(&pdu, max_message_bytes).map_err(ExchangeError::Frame)?;
                if h.msgid != MSGID {
                    // A Notice of Disconnection, or a stray; the connection
                    // cannot be trusted with this request.
                    return Err(ExchangeError::Closed);
                }
                if tag::is_final_response(h.op_tag) {
                    return Ok(pdu);
                }
                on_response(h.op_tag, &pdu).map_err(ExchangeError::Frame)?;
            }
        };
        match limit {
            Limit::Whole(d) => timeout(d, work)
                .await
                .map_err(|_| ExchangeError::Timeout(d))?,
            Limit::Silence(_) => work.await,
        }
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
