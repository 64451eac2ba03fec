//! The check-in rule: what becomes of a connection when its lease ends,
//! decided from what the connection could carry over to its next user.
//! A connection is kept as it is only when its state is known and fit for
//! the purpose it was lent for; one that may be bound as someone is reset
//! with an anonymous bind first (client sessions) or closed; one whose state
//! is not known is closed.

/// What a connection is lent for. Each purpose keeps its own idle
/// connections: they differ in who they are bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// One client session, which forwards its requests as they are.
    Session,
    /// Binds that check a sign-in's password, and nothing else: the next
    /// use binds again, so a connection bound as the last user is fit.
    SignIn,
    /// ldapgate's own requests as the service account.
    Service,
}

/// Whom the directory takes a connection's requests to come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    /// The configured service account (anonymous standing in for it when
    /// none is configured).
    ServiceAccount,
    /// A user or a client: a bind other than ldapgate's own went up,
    /// whether or not it succeeded.
    Someone,
}

/// What a connection could carry over to its next user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnState {
    pub identity: Identity,
    /// Operations were abandoned: their late results may still arrive
    /// (a bind waits them out, RFC 4511 §4.2.1).
    pub late_results: bool,
    /// A paged search (RFC 2696) stopped before its last page: the server
    /// still holds its cursor.
    pub open_cursor: bool,
    /// The protocol state is not known: a request is not answered in full,
    /// bytes came that no response accounts for, or something failed
    /// (an I/O error, a timeout, an extended operation ldapgate does not
    /// know).
    pub unsettled: bool,
}

impl ConnState {
    /// A connection just opened: anonymous, with nothing in flight.
    pub const FRESH: ConnState = ConnState {
        identity: Identity::Anonymous,
        late_results: false,
        open_cursor: false,
        unsettled: false,
    };
}

/// What the pool does with a connection coming back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckIn {
    /// Kept idle for the next lease of the same purpose.
    Keep,
    /// Made anonymous with an anonymous bind, then checked in again.
    Reset,
    Close,
}

/// The check-in rule for a connection lent for `purpose`, in `state`;
/// `room` tells whether the purpose's idle connections have room for one
/// more.
pub fn check_in(purpose: Purpose, state: ConnState, room: bool) -> CheckIn {
    if state.unsettled || state.open_cursor || !room {
        return CheckIn::Close;
    }
    match purpose {
        Purpose::Session if state.identity == Identity::Anonymous && !state.late_results => {
            CheckIn::Keep
        }
        // An anonymous bind leaves nothing of the last client: it replaces
        // the identity and waits for the abandoned operations.
        Purpose::Session => CheckIn::Reset,
        Purpose::SignIn if state.identity != Identity::ServiceAccount && !state.late_results => {
            CheckIn::Keep
        }
        Purpose::Service if state.identity == Identity::ServiceAccount && !state.late_results => {
            CheckIn::Keep
        }
        Purpose::SignIn | Purpose::Service => CheckIn::Close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(identity: Identity) -> ConnState {
        ConnState {
            identity,
            ..ConnState::FRESH
        }
    }

    #[test]
    fn a_clean_connection_is_kept_for_its_purpose() {
        assert_eq!(
            check_in(Purpose::Session, ConnState::FRESH, true),
            CheckIn::Keep
        );
        assert_eq!(
            check_in(Purpose::SignIn, state(Identity::Someone), true),
            CheckIn::Keep
        );
        assert_eq!(
            check_in(Purpose::SignIn, ConnState::FRESH, true),
            CheckIn::Keep
        );
        assert_eq!(
            check_in(Purpose::Service, state(Identity::ServiceAccount), true),
            CheckIn::Keep
        );
    }

    #[test]
    fn a_session_connection_that_may_carry_an_identity_is_reset() {
        for identity in [Identity::Someone, Identity::ServiceAccount] {
            assert_eq!(
                check_in(Purpose::Session, state(identity), true),
                CheckIn::Reset
            );
        }
        let abandoned = ConnState {
            late_results: true,
            ..ConnState::FRESH
        };
        assert_eq!(check_in(Purpose::Session, abandoned, true), CheckIn::Reset);
    }

    #[test]
    fn a_connection_of_unknown_state_is_never_kept() {
        let cases = [
            ConnState {
                unsettled: true,
                ..state(Identity::Anonymous)
            },
            ConnState {
                unsettled: true,
                ..state(Identity::ServiceAccount)
            },
            ConnState {
                open_cursor: true,
                ..state(Identity::ServiceAccount)
            },
        ];
        for purpose in [Purpose::Session, Purpose::SignIn, Purpose::Service] {
            for s in cases {
                assert_eq!(
                    check_in(purpose, s, true),
                    CheckIn::Close,
                    "{purpose:?} {s:?}"
                );
            }
        }
    }

    #[test]
    fn identities_do_not_cross_purposes() {
        // The service account's connections never serve sign-ins, and a
        // user's never serve the service account.
        assert_eq!(
            check_in(Purpose::SignIn, state(Identity::ServiceAccount), true),
            CheckIn::Close
        );
        assert_eq!(
            check_in(Purpose::Service, state(Identity::Someone), true),
            CheckIn::Close
        );
        assert_eq!(
            check_in(Purpose::Service, ConnState::FRESH, true),
            CheckIn::Close
        );
    }

    #[test]
    fn a_full_pool_closes() {
        for purpose in [Purpose::Session, Purpose::SignIn, Purpose::Service] {
            assert_eq!(
                check_in(purpose, state(Identity::ServiceAccount), false),
                CheckIn::Close
            );
        }
    }
}
