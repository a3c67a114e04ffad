import RelayProtocol

public typealias AnnotateRequest = Chrys_Cloud_Videostreaming_V1beta1_AnnotateRequest

/// What Annotate requires before it stores anything.
public enum AnnotationValidation {
  /// A message naming the first required field that is missing, or nil when the request is complete.
  public static func problem(in request: AnnotateRequest) -> String? {
    if request.deviceName.isEmpty {
      return "device_name is required: the camera (device id) this annotation is about"
    }
    if request.type.isEmpty {
      return "type is required: what was annotated, for example \"person\""
    }
    if request.startTimestamp <= 0 {
      return "start_timestamp is required: milliseconds since the Unix epoch (server clock), greater than 0"
    }
    return nil
  }
}
