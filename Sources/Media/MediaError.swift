import CFFmpeg

/// An FFmpeg call that failed, with FFmpeg's own words for why.
public struct MediaError: Error, CustomStringConvertible, Sendable {
  public let operation: String
  public let code: Int32
  public let message: String

  public init(operation: String, code: Int32) {
    self.operation = operation
    self.code = code
    var buffer = [CChar](repeating: 0, count: 256)
    av_strerror(code, &buffer, buffer.count)
    self.message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  public init(operation: String, message: String) {
    self.operation = operation
    self.code = 0
    self.message = message
  }

  public var description: String { "\(operation): \(message)" }

  public var isEndOfFile: Bool { code == cff_averror_eof() }
  public var isTryAgain: Bool { code == cff_averror(EAGAIN) }
}

@inline(__always)
func check(_ code: Int32, _ operation: @autoclosure () -> String) throws(MediaError) {
  if code < 0 { throw MediaError(operation: operation(), code: code) }
}
