/// Why the server refused something a publisher sent. Each maps to one gRPC status (see IngestService).
enum IngestError: Error, Equatable, CustomStringConvertible {
  case frameBeforeHello
  case helloTwice
  case invalidDeviceID(String)
  case invalidCodec(String)
  case frameTooLarge(size: Int, limit: Int)
  case sequenceWentBackwards(got: UInt64, lastStored: UInt64)
  case sequenceSkipped(got: UInt64, expected: UInt64)
  case badDropRange(first: UInt64, last: UInt64, expected: UInt64)
  case sequenceTooLarge(UInt64, limit: UInt64)
  case takenOver(device: String)
  case tooManyDevices(limit: Int)
  case deviceNotAllowed(String)

  var description: String {
    switch self {
    case .frameBeforeHello:
      return "the first message of a Publish stream must be a hello (device id, session id, codec); got a frame"
    case .helloTwice:
      return "a Publish stream takes one hello; start a new stream to describe a new codec"
    case .invalidDeviceID(let reason):
      return reason
    case .invalidCodec(let reason):
      return "hello describes no usable codec: \(reason)"
    case .frameTooLarge(let size, let limit):
      return "frame of \(size) bytes is over the server's limit of \(limit) bytes (relay-server --max-frame-bytes)"
    case .sequenceWentBackwards(let got, let last):
      return "sequence \(got) went backwards: \(last) is already stored for this session; send \(last + 1) next"
    case .sequenceSkipped(let got, let expected):
      return "sequence \(got) skips ahead: expected \(expected); frames up to \(expected - 1) are stored, resend from \(expected)"
    case .badDropRange(let first, let last, let expected):
      return "frames_dropped \(first)...\(last) must start at \(expected), the next sequence after the last stored, and not end before it"
    case .sequenceTooLarge(let sequence, let limit):
      return "sequence \(sequence) is too large: sequence numbers must stay below \(limit) (2^53); start a new session (a new session id) from 1"
    case .takenOver(let device):
      return "device \(device) was taken over by a newer Publish session"
    case .tooManyDevices(let limit):
      return "the server already has its limit of \(limit) devices (relay-server --max-devices)"
    case .deviceNotAllowed(let device):
      return "this caller may not publish device \"\(device)\" (its token's device patterns do not cover it)"
    }
  }
}
