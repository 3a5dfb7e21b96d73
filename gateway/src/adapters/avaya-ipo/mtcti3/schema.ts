import protobuf from 'protobufjs'

/**
 * Our own protobuf definitions for the part of IP Office MTCTI-3 the adapter uses, written from the facts in
 * research Part A (A.3-A.6). Field numbers and types follow the public Avaya schema; like it, the schema has no
 * package. Only fields whose number and type are known are declared: protobufjs skips the others on decode,
 * which is what the wire format wants from a reader that knows less than the writer.
 *
 * Tags: [C] number and type confirmed in the research, [I] inferred (type or number not stated there).
 * Kept as a string in a TS module so the esbuild bundle stays self-contained (no .proto file to ship).
 */
export const MTCTI3_PROTO = `
syntax = "proto3";

message Message {
  oneof payload {
    RequestResponse response = 1;
    GeneralCmd generalcmd = 2;
    Subscribe subscribe = 3;
    SubscribeCmd subscribecmd = 4;
    SubscribeEnd subscribeend = 5;
    SubscribeTerminated subscribeterminated = 6;
    GeneralData generaldata = 7;
    Notify notify = 8;
    NotifyAck notifyack = 9;
  }
}

message RequestResponse { int32 requestid = 1; int32 result = 2; string additional = 3; }

// getfile = 6 left out: GetFile's fields are not in the research.
message GeneralCmd { int32 requestid = 1; oneof payload { bool getversioninfo = 7; } }
message GeneralData { int32 responseid = 1; oneof payload { string versioninfo = 7; } }

// presence = 10, queue = 42, parkserver = 43, refreshwrapper = 45 left out: we never subscribe to them.
message Subscribe {
  int32 requestid = 1;
  int32 subscribe_id = 2;
  int32 timeout = 3;
  string label = 4;
  oneof payload { SubscribeLines lines = 40; SubscribeUser user = 41; }
}

// [I] the field number of flags (gomtcti3 sets "flags: 7"; one int32 field, assumed number 1).
message SubscribeLines { int32 flags = 1; }
message SubscribeUser { bytes guid = 1; int32 flags = 2; int32 ccflags = 3; }

// presence = 10, callcontrol = 14, queue = 42 left out: not used.
message SubscribeCmd {
  int32 requestid = 1;
  int32 subscribe_id = 2;
  oneof payload { int32 timeout = 3; UpdateUser user = 41; }
}
message SubscribeEnd { int32 requestid = 1; int32 subscribe_id = 2; string reason = 3; }
message SubscribeTerminated { int32 subscribe_id = 1; string reason = 2; }

// presence = 10, queue = 42, parkserver = 43, refreshwrapper = 45 left out: not subscribed, so not expected.
message Notify {
  int32 subscribe_id = 1;
  int32 notify_id = 2;
  string label = 3;
  oneof payload { NotifyCallControl callcontrol = 14; NotifyLines lines = 40; NotifyUser user = 41; }
}
message NotifyAck { int32 subscribe_id = 1; int32 notify_id = 2; }

// Queue lists (3, 5, 7) left out: LinesQueue's fields are not in the research.
message NotifyLines { int32 flags = 1; repeated LinesUser adduser = 2; repeated LinesUser deleteuser = 4; repeated LinesUser changeuser = 6; }
message LinesUser { bytes guid = 1; string extn = 2; string name = 3; }

// [I] string types of extn/name/fullname/email; dnd is bool [C]. Other fields (language, forwards, ...) left out.
message NotifyUser { string extn = 2; string name = 3; string fullname = 4; string email = 6; bool dnd = 9; }

message NotifyCallControl { int32 refreshinstance = 1; repeated CallInfo callinfo = 2; repeated CallLost calllost = 3; }

// [I] int32 for callid/referencecallid/relatedcallid (CallLost.callid is int32 [C]). Party fields (10-13) left
// out: their types are not in the research.
message CallInfo {
  enum State {
    UNKNOWN = 0; DIALTONE = 1; DIALLING = 2; DIALLED = 3; RINGING = 4; RINGBACK = 5; CONNECTED = 6; ONHOLD = 7;
    ONHOLDPENDTRANSFER = 8; ONHOLDPENDCONF = 9; DISCONNECTED = 10; BUSY = 11; FAILED = 12; WAITINGFORACCT = 13;
    WAITINGFORAUTH = 14; WAITINGFORLINE = 15; REMINDER = 16; AFTERCALLWORK = 17; RINGINGDIVERT = 18;
    RINGINGVOICEMAIL = 19; ANSWEREDBYVOICEMAIL = 20; LEAVINGVOICEMAILMESSAGE = 21; QUEUEING = 22; RETARGETING = 23;
  }
  // [I] values 0..3 in the order the research lists the names.
  enum Direction { UNDEFINED = 0; OUTBOUND = 1; INBOUND = 2; PICKUP = 3; }
  int32 callid = 2;
  int32 referencecallid = 3;
  int32 relatedcallid = 4;
  State state = 5;
  Direction direction = 6;
  bytes gcid = 8;
}

message CallLost { int32 callid = 1; int32 referencecallid = 2; int32 reason = 3; bool thisenddropped = 4; string description = 5; }

// absence = 2, ec500 = 3, shortcodedata = 4, loginextn = 7, app = 8, fwdu = 9 left out: not used.
message UpdateUser { UpdateUserSAC sac = 1; }
message UpdateUserSAC { int32 set = 1; }
`

let root: protobuf.Root | undefined

/** The parsed schema, built on first use (no work at import time). */
export function mtcti3Root(): protobuf.Root {
  root ??= protobuf.parse(MTCTI3_PROTO, { keepCase: true }).root
  return root
}

/** The envelope type every frame carries. */
export function messageType(): protobuf.Type {
  return mtcti3Root().lookupType('Message')
}
