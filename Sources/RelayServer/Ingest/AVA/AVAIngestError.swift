import GRPCCore

/// Why relay-server, as an AVA extension, refused a sender's message; each maps to one gRPC status.
enum AVAIngestError: Error, Equatable, CustomStringConvertible {
  case sampleBeforeDescriptor
  case secondDescriptor
  case noMediaDescriptor
  case unknownEncoding(String)
  case unknownPixelFormat(String)
  case badDimensions(width: UInt32, height: UInt32, limit: Int)
  case strideTooSmall(stride: Int, rowBytes: Int, pixelFormat: String, width: Int)
  case contentLength(got: Int, expected: Int, layout: String)
  case emptySample
  case referenceWithoutSharedMemory
  case referenceOutside(offset: UInt64, length: UInt64, fileBytes: Int, file: String)
  case referenceTooLarge(length: UInt64, limit: Int)
  case sharedMemory(String)
  case notAnImage(encoding: String, reason: String)
  case unauthenticated(String)
  case invalidDevice(String)
  case tooManyDevices(limit: Int)
  case deviceNotAllowed(String)

  var code: RPCError.Code {
    switch self {
    case .sampleBeforeDescriptor, .secondDescriptor, .referenceWithoutSharedMemory: .failedPrecondition
    case .sharedMemory: .failedPrecondition
    case .referenceTooLarge: .resourceExhausted
    case .unauthenticated: .unauthenticated
    case .deviceNotAllowed: .permissionDenied
    case .tooManyDevices: .resourceExhausted
    default: .invalidArgument
    }
  }

  var description: String {
    switch self {
    case .sampleBeforeDescriptor:
      "the first message of an AVA session must be a media_stream_descriptor; got a media_sample"
    case .secondDescriptor:
      "an AVA session takes one media_stream_descriptor; start a new ProcessMediaStream call to describe other frames"
    case .noMediaDescriptor:
      "media_stream_descriptor has no media_descriptor with a video_frame_sample_format (encoding, pixel format, dimensions)"
    case .unknownEncoding(let encoding):
      "video_frame_sample_format.encoding \(encoding) is not RAW, JPG, PNG or BMP"
    case .unknownPixelFormat(let format):
      "RAW pixel_format \(format) is not one of YUV420P, RGB565BE/LE, RGB555BE/LE, RGB24, BGR24, ARGB, RGBA, ABGR, BGRA"
    case .badDimensions(let width, let height, let limit):
      "dimensions \(width)x\(height) are not a picture this server takes: both must be 1..16384 and a frame at most \(limit) bytes (relay-server --max-frame-bytes)"
    case .strideTooSmall(let stride, let rowBytes, let format, let width):
      "stride_bytes \(stride) is smaller than a row of \(width) \(format) pixels (\(rowBytes) bytes); send 0 for packed rows"
    case .contentLength(let got, let expected, let layout):
      "sample content is \(got) bytes; \(layout) is \(expected) bytes"
    case .emptySample:
      "media_sample carries neither content_bytes nor content_reference"
    case .referenceWithoutSharedMemory:
      "media_sample has a content_reference but the descriptor named no shared memory buffer"
    case .referenceOutside(let offset, let length, let fileBytes, let file):
      "content_reference offset \(offset) + length \(length) lies outside the shared memory \(file) of \(fileBytes) bytes"
    case .referenceTooLarge(let length, let limit):
      "content_reference length \(length) is over the server's limit of \(limit) bytes per frame (relay-server --max-frame-bytes)"
    case .sharedMemory(let reason):
      reason
    case .notAnImage(let encoding, let reason):
      "sample is not a \(encoding) image that decodes: \(reason)"
    case .unauthenticated(let reason):
      reason
    case .invalidDevice(let reason):
      reason
    case .tooManyDevices(let limit):
      "the server already has its limit of \(limit) devices (relay-server --max-devices)"
    case .deviceNotAllowed(let device):
      "this caller may not publish device \"\(device)\" (its token's device patterns do not cover it)"
    }
  }
}

extension RPCError {
  init(_ error: AVAIngestError) { self.init(code: error.code, message: error.description) }
}
