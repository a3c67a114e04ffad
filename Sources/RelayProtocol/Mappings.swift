import Foundation
import RelayCore

// The proto ⇄ domain mappings both programs use, in one place. Generated code lives in Generated/.

/// Why a codec description cannot be used; the ingest turns it into INVALID_ARGUMENT.
public struct CodecDescriptionProblem: Error, CustomStringConvertible {
  public let description: String
}

extension CodecDescription {
  public init(validating codec: Framerelay_V1_CodecDescription) throws(CodecDescriptionProblem) {
    guard !codec.name.isEmpty else {
      throw .init(description: "codec.name is empty (e.g. h264, hevc, mjpeg, rawvideo)")
    }
    guard codec.width > 0, codec.height > 0, codec.width <= 16384, codec.height <= 16384 else {
      throw .init(description: "codec size \(codec.width)x\(codec.height) is not a picture size")
    }
    guard codec.timeBaseNum > 0, codec.timeBaseDen > 0 else {
      throw .init(description: "codec time base \(codec.timeBaseNum)/\(codec.timeBaseDen) must be positive")
    }
    self.init(
      name: codec.name, width: Int(codec.width), height: Int(codec.height), pixelFormat: codec.pixFmt,
      extradata: codec.extradata, timeBase: Rational(codec.timeBaseNum, codec.timeBaseDen),
      frameRate: (0...CodecDescription.largestFrameRate).contains(codec.frameRate) ? codec.frameRate : 0)
  }

  public var proto: Framerelay_V1_CodecDescription {
    .with {
      $0.name = name
      $0.width = Int32(width)
      $0.height = Int32(height)
      $0.pixFmt = pixelFormat
      $0.extradata = extradata
      $0.timeBaseNum = timeBase.numerator
      $0.timeBaseDen = timeBase.denominator
      $0.frameRate = frameRate
    }
  }
}

extension CaptureState {
  public init(_ state: Framerelay_V1_CaptureStatus.State) {
    switch state {
    case .reconnecting: self = .reconnecting
    case .failed: self = .failed
    case .stopped: self = .stopped
    default: self = .running
    }
  }
}

extension Framerelay_V1_CaptureStatus.State {
  public init(_ state: CaptureState) {
    switch state {
    case .running: self = .running
    case .reconnecting: self = .reconnecting
    case .failed: self = .failed
    case .stopped: self = .stopped
    }
  }
}

extension Framerelay_V1_SourceKind {
  public init(_ kind: SourceKind) {
    switch kind {
    case .rtsp: self = .rtsp
    case .v4l2: self = .v4L2
    case .file: self = .file
    case .testPattern: self = .testPattern
    case .synthetic: self = .synthetic
    }
  }
}
