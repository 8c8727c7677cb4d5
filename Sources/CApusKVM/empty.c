// Header-only module; this file keeps SwiftPM happy.
