// Hardhat's node as a plain JSON-RPC dev node for the test suites (src/perun/chain/hardhat.py
// starts it with `hardhat node`); nothing is compiled here: the project's artifacts come from
// solc-js. PERUN_HARDHAT_GENESIS (unix seconds) and PERUN_HARDHAT_BLOCK_TIME (seconds) mirror
// anvil's --timestamp and --block-time.
const genesis = process.env.PERUN_HARDHAT_GENESIS;
const blockTime = Number(process.env.PERUN_HARDHAT_BLOCK_TIME || 0);

module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      // One log line per request otherwise, on a pipe no one reads.
      loggingEnabled: false,
      // Any Ethereum node mines a transaction that reverts and returns its hash (the receipt
      // then says status 0); Hardhat's default answers eth_sendRawTransaction with an error.
      throwOnTransactionFailures: false,
      ...(genesis ? { initialDate: new Date(Number(genesis) * 1000).toISOString() } : {}),
      mining: { auto: true, interval: blockTime * 1000 },
    },
  },
};
