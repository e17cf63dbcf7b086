"""The local control interface of a running node: JSON lines over a Unix domain socket.

The socket is `<data dir>/control.sock`, mode 0600, so only the node's user can drive it.
Each request is one line, each reply one line, in order; a connection may send several.

    request  {"method": "pay", "params": {"channel": "0x…", "amount": "1000000000000000000"}}
    reply    {"ok": true, "result": {...}}
    or       {"ok": false, "error": {"type": "UnknownChannel", "code": "UNKNOWN_CHANNEL", "category": "user",
                                 "message": "this node has no channel 0x…: …", "fields": {"channel": "0x…"}}}

Channel ids are 0x-prefixed hex strings; amounts are decimal strings of wei (or token units),
in requests and replies alike, since JSON numbers lose precision above 2**53. The error type is
the name of the exception class (perun.errors, or this module's ControlError and its
subclasses); `call` raises that class again on the client's side, saying the message, with the
code, category and fields as its `explained` (perun.control.explain: the stable codes, the
categories user / refused / internal, and the sentence, written where the node knows the context).

Methods and their params:
    info        {}                                          the node: address, host, port, chain, contracts,
                                                            the chain time it last read, whether the
                                                            chain answers now (chain_reachable)
    connect     {peer, host, port}                          dial a peer and remember it
    open        {peer, deposit, peer_deposit, delta, timeout?}
                                                            open a channel (this node is Alice); the reply
                                                            is the channel once open, or once created on
                                                            chain when the peer has not confirmed within
                                                            `timeout` seconds (stage initialising)
    cancel      {channel}                                   give up an opening: no create or confirm from
                                                            now on (a created one is refunded at its deadline)
    pay         {channel, amount}                           pay the peer off chain
    close       {channel}                                   cooperative close (pays out at once)
    register    {channel}                                   unilateral close: register the latest state
    finalize    {channel}                                   pay out a registered state after Δ
    refund      {channel}                                   take Alice's deposit back if Bob never confirmed
    channels    {}                                          every channel
    status      {channel?}                                  one channel, or every channel
    sync        {}                                          read the chain now and do what is due
    wait        {channel, stage?, version?, registered?, timeout?}
                                                            answer once the channel (of any kind) reaches
                                                            a stage (comma-separated), a version, or a
                                                            registered version on chain (a close's)
    wait_peer   {peer, timeout?}                            answer once connected to the peer
    wait_towers {channel, version, nanocontracts?, timeout?}
                                                            answer once every watchtower the node hands
                                                            its states to acknowledged the channel (of
                                                            any kind) at `version` or above, and each
                                                            nanocontract {nid: version} of a multistate one

Multistate (ledger) and virtual channels, when the node runs them (a deployment with MSContract
and the VirtualChannel app):
    ledger_open   {peer, deposit, peer_deposit, delta, timeout?}
                                                            open a multistate channel (this node is Alice)
    ledgers       {}                                        every multistate channel
    virtual_open  {ledger, peer, ledger_b, deposit, peer_deposit, validity, window, fee?}
                                                            open a virtual channel to `peer` through the
                                                            peer of `ledger` (Ingrid), whose channel with
                                                            `peer` is `ledger_b`; `validity` a chain time
    virtual_close {channel}                                 close it fast through Ingrid
    virtuals      {}                                        every virtual channel
`pay` and `status` take a virtual channel's id as well, and `status` a multistate channel's.

Multi-hop payments (docs/protocol.md §13), when the deployment has the HashTimeLock app too:
    invoice       {amount, expiry?, description?}           an invoice payable for `expiry` seconds (default
                                                            3600): its text `invoice` (perun1…) and fields
    pay_invoice   {invoice, timeout?}                       pay an invoice's text over the cheapest route
                                                            the node finds by asking its peers
    pay_to        {payee, amount, timeout?}                 pay an address the same way, without an invoice
Both payments answer once the payee claimed: the hops, the fees, the total and the preimage; or
PaymentPending after `timeout` seconds (default 30; the lock stays, and completes or returns).
`status` takes a payment hash too: this node's part in that payment.

A watchtower (`perun watchtower`) answers info, status, wait and sync: `status` is each channel
it watches (the client, the version and balances it holds, the reward, what the chain registered,
its refutation and the reward paid), `info` has its `contract` and the number `watched`, and
`wait` waits for the stage (watching, closing, closed), version or registered version of one.

Nanocontracts of a multistate channel (nids are 0x and 64 hex digits, `data` and `z` 0x-hex bytes):
    nanocontract_create   {channel, app, blocked_mine, blocked_peer, data}
                                                            create one of `app` (a name of the deployment's
                                                            apps) holding the app state `data` that blocks
                                                            these amounts (the node checks it is one the app
                                                            starts from); the reply has its `nid`
    nanocontract_call     {channel, nid, fun, z?}           call function `fun` (its name, or its number)
                                                            off chain with argument `z`
    nanocontract_absorb   {channel, nid}                    put a terminated one's releases back into the cash
    nanocontract_register {channel, nid}                    register the latest version on chain (its window
                                                            starts; the watcher answers and executes)
Each answers with the channel (as `status`) once the peer has countersigned, or the transaction is
mined. `wait` takes a `nid` too: then `version` is that nanocontract's, and `registered` the version
the chain holds of it; without, `registered` is the channel version a close registered on chain.
"""

from perun.control.client import call, remote_error
from perun.control.protocol import (
    CLIENT_TIMEOUT,
    MAX_LINE,
    SOCKET_NAME,
    BadRequest,
    ControlError,
    InternalError,
    NodeNotRunning,
    socket_path,
)
from perun.control.server import ControlServer

__all__ = ["CLIENT_TIMEOUT", "MAX_LINE", "SOCKET_NAME", "BadRequest", "ControlError", "ControlServer",
           "InternalError", "NodeNotRunning", "call", "remote_error", "socket_path"]
