// The socket.io peer of benches/compare.sh: a room-broadcast server as a
// socket.io application would write it.
//
//   PORT=3000 node server.mjs
//
// Clients (loadgen --target socketio) connect with the WebSocket transport
// only (/socket.io/?EIO=4&transport=websocket), then:
//   emit("subscribe", room, ack)        join the room; ack() once joined
//   emit("publish", room, data, ack)    broadcast "msg" (data) to the room,
//                                       sender included; ack() after
//
// Settings follow socket.io's own performance and memory advice
// (https://socket.io/docs/v4/performance-tuning/,
// https://socket.io/docs/v4/memory-usage/): the ws native add-ons
// (bufferutil, utf-8-validate) are installed as optional dependencies, the
// reference to each session's first HTTP request is dropped, per-message
// deflate stays off (its default), and long-polling is disabled so every
// client is on WebSocket from the first byte. Node runs JavaScript on one
// thread: this server uses one core however many the machine has.

import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

const httpServer = createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  // The generator answers every ping, but on 2 busy cores a pong can be late;
  // socket.io's defaults (25 s / 20 s) are kept.
  pingInterval: 25000,
  pingTimeout: 20000,
  maxHttpBufferSize: 1e6,
});

io.engine.on("connection", (rawSocket) => {
  rawSocket.request = null;
});

io.on("connection", (socket) => {
  socket.on("subscribe", (room, ack) => {
    socket.join(String(room));
    if (typeof ack === "function") ack();
  });
  socket.on("publish", (room, data, ack) => {
    // Encoded once per broadcast by the adapter, then written to every member.
    io.to(String(room)).emit("msg", data);
    if (typeof ack === "function") ack();
  });
});

httpServer.listen(port, host, () => {
  console.error(`socket.io peer listening on ${host}:${port}, pid ${process.pid}`);
});

const stop = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
