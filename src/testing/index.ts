// The public test kit: a fake QMP server for users' own tests (`qmp/testing`).

export {
  FakeQMPServer,
  FakePeer,
  defaultGreeting,
  makeEvent,
  type FakeServerOptions,
  type CommandHandler,
  type HandlerResult,
} from "./fake-server.js";
export { checkFaults, type Fault, type FaultKind, type FaultPlan, type Faults } from "./faults.js";
