//! A bank-account actor written the way a user would, with hooks tests can observe.

use std::sync::atomic::{AtomicUsize, Ordering};

use overmind_ractor::{
    prelude::*,
    ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub balance: i64,
    pub history: Vec<i64>,
}

#[derive(VirtualMessage)]
pub enum AccountMsg {
    Deposit(i64),
    /// Deposits and replies with the new balance.
    DepositAndGet(i64, RpcReplyPort<i64>),
    Balance(RpcReplyPort<i64>),
    History(RpcReplyPort<Vec<i64>>),
    /// Changes the state, then fails: the change must not be stored.
    DepositThenFail(i64, RpcReplyPort<i64>),
    /// Changes the state, then panics.
    DepositThenPanic(i64),
    /// Replies from a spawned task after `handle` returned.
    BalanceLater(RpcReplyPort<i64>),
    /// Never replies.
    Ignore(RpcReplyPort<i64>),
}

/// Counts activations (pre_start) and stops (post_stop) across all accounts.
pub static STARTS: AtomicUsize = AtomicUsize::new(0);
pub static STOPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
pub struct AccountActor;

#[virtual_actor(kind = "account", passivate_after = "5m")]
impl Actor for AccountActor {
    type Msg = AccountMsg;
    type State = Account;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        activation: Activation<Account>,
    ) -> Result<Account, ActorProcessingErr> {
        STARTS.fetch_add(1, Ordering::SeqCst);
        Ok(activation.into_state_or_default())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        _state: &mut Account,
    ) -> Result<(), ActorProcessingErr> {
        STOPS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Account,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AccountMsg::Deposit(n) => {
                state.balance += n;
                state.history.push(n);
            }
            AccountMsg::DepositAndGet(n, reply) => {
                state.balance += n;
                state.history.push(n);
                let _ = reply.send(state.balance);
            }
            AccountMsg::Balance(reply) => {
                let _ = reply.send(state.balance);
            }
            AccountMsg::History(reply) => {
                let _ = reply.send(state.history.clone());
            }
            AccountMsg::DepositThenFail(n, reply) => {
                state.balance += n;
                let _ = reply.send(state.balance);
                return Err("refusing after the fact".into());
            }
            AccountMsg::DepositThenPanic(n) => {
                state.balance += n;
                panic!("boom at {n}");
            }
            AccountMsg::BalanceLater(reply) => {
                let balance = state.balance;
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    let _ = reply.send(balance);
                });
            }
            AccountMsg::Ignore(reply) => drop(reply),
        }
        Ok(())
    }
}
