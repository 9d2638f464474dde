// The public test kit (`qmp/testing`): a fake QMP server and a transcript replayer for users' own tests.

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
export { ReplayServer, type ReplayServerOptions } from "./replay.js";
export { TranscriptMismatchError } from "../errors.js";
