// `qmp/qapi`: the QAPI types of the newest QEMU shipped (10.0). Older ones: `qmp/qapi/qemu-7.2`;
// qemu-storage-daemon: `qmp/qapi/qsd-10.0`; your own build: `qmp codegen`.

export type * from "../../generated/qapi/qemu-10.0.js";
