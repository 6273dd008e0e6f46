//! One connection per peer pair: the simultaneous-connect tie-break
//! (docs/PROTOCOL.md §3). Pure decisions, no sockets.
