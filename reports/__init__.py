"""Reports for finance: the reconciled order-to-invoice-to-cash report (HTML, CSV, XLSX)."""
