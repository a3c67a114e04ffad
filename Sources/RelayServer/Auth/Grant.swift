import GRPCCore

/// What one authenticated caller may do: roles, and the devices they apply to (none listed: every device).
public struct Grant: Sendable, Equatable {
  /// Who the caller is, for logs; never the token itself.
  public var identity: String
  public var roles: Set<Role>
  public var devices: [DevicePattern]

  public init(identity: String, roles: Set<Role>, devices: [DevicePattern] = []) {
    self.identity = identity
    self.roles = roles
    self.devices = devices
  }

  /// Auth switched off (a loopback-only server with no tokens, JWT or client certificates).
  public static let everything = Grant(identity: "anyone", roles: Set(Role.allCases))
  /// Where no grant was set: nothing is allowed, so a path that skipped authentication fails closed.
  public static let nothing = Grant(identity: "nobody", roles: [])

  /// A grant without roles covers no device, so `.nothing` fails closed here too.
  public func allows(device: String) -> Bool {
    !roles.isEmpty && (devices.isEmpty || devices.contains { $0.matches(device) })
  }
}

/// The grant of the call being served. `AuthInterceptor` sets it around each handler; services ask it
/// when they learn which device a call is about.
public enum Access {
  @TaskLocal public static var grant: Grant = .nothing

  public static func allows(device: String) -> Bool { grant.allows(device: device) }

  /// PERMISSION_DENIED unless the caller's grant covers `device`.
  public static func require(device: String) throws(RPCError) {
    guard grant.allows(device: device) else {
      throw RPCError(
        code: .permissionDenied,
        message: "this caller may not use device \"\(device)\" (its rights cover \(grant.devices.map(\.text).joined(separator: ", ")))")
    }
  }
}
