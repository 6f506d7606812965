"""The record shape the bank-statement importer lands (connectors/statements.py), and ``camt053.yaml`` maps.

One raw record per transaction: an ``Ntry`` with one ``TxDtls`` gives one record; a batch booking
(several ``TxDtls``) gives one record per transaction with the transaction's own amount. Raw
``object`` is ``"camt053.entry"`` (``"mt940.entry"`` for MT940, same shape); the raw ``source_id``
is the bank's servicer reference (``#<n>`` per transaction of a batch), stable across re-imports.
Only the fields the mapping reads are listed here; the importer lands more.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class Camt053Entry(TypedDict, total=False):
    statement_id: str  # Stmt/Id
    account_iban: str  # Stmt/Acct/Id/IBAN (or Othr/Id)
    entry_reference: str | None  # Ntry/NtryRef
    amount: str  # TxDtls/AmtDtls/TxAmt/Amt, else Ntry/Amt: always positive, exact decimal text
    currency: str  # the Ccy attribute of that amount
    credit_debit: Literal["CRDT", "DBIT"]  # CdtDbtInd: CRDT = money in, DBIT = money out
    reversal: bool  # RvslInd
    status: str  # BOOK / PDNG / INFO (Sts or Sts/Cd)
    booking_date: str  # BookgDt/Dt (YYYY-MM-DD), or the date of BookgDt/DtTm
    value_date: str | None  # ValDt/Dt
    account_servicer_ref: str | None  # Refs/AcctSvcrRef, else Ntry/AcctSvcrRef
    end_to_end_id: str | None  # Refs/EndToEndId ("NOTPROVIDED" kept as sent; the mapping drops it)
    debtor_name: str | None  # RltdPties/Dbtr/Nm or Dbtr/Pty/Nm
    debtor_iban: str | None  # RltdPties/DbtrAcct/Id/IBAN
    creditor_name: str | None  # RltdPties/Cdtr/Nm (for DBIT entries, the payee)
    remittance_unstructured: str | list[str] | None  # RmtInf/Ustrd (the importer joins the lines)
    creditor_reference: str | None  # RmtInf/Strd/CdtrRefInf/Ref (e.g. ISO 11649 RF...)
    bank_tx_code: str | None  # BkTxCd Domn-Fmly-SubFmly, or Prtry/Cd
