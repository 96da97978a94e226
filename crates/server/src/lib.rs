//! Meeting server (being written).
