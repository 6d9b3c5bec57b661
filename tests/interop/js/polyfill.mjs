// Node 20 lacks Promise.withResolvers (Node 22 has it); js-libp2p 2.10's
// dependencies call it. Loaded with `node --import ./polyfill.mjs`.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
