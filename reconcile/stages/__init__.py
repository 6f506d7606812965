"""The reconciliation core as a pipeline of named stages (called in this order by
:func:`reconcile.core.reconcile_one`):

==================  ==========================  ===============================================
stage               module                      adds
==================  ==========================  ===============================================
identity            :mod:`.identity`            account -> cluster, payer name -> cluster
link_orders         :mod:`.orders`              order -> deal (reference, then customer + amount)
link_invoices       :mod:`.invoices`            invoice -> order / deal, duplicate invoices
apply_credits       :mod:`.credits`             credit notes spread over their chain's invoices
allocate_payments   :mod:`.payments`            payment -> invoice allocations (refs, 1:1, subsets)
settle              :mod:`.settlement`          payment and invoice balances, unapplied, overdue
check_chains        :mod:`.chains`              won deals vs their orders (amount, currency, customer)
check_lines         :mod:`.lines`               deal lines vs order lines per product
check_billing       :mod:`.billing`             ordered vs invoiced, stage conflicts
check_customers     :mod:`.customers`           clusters whose members disagree
finish_exceptions   :mod:`.exceptions`          owner, reporting amount, severity, fingerprint
row_states          :mod:`.states`              one state per source row
conservation        :mod:`.conservation`        the totals tie out (raises otherwise)
==================  ==========================  ===============================================

Each stage is a pure function over frames: it takes the canonical :class:`~reconcile.frames.Frames`
and the results of the stages before it (small frozen dataclasses) and returns its own. Exceptions
and links are returned as frames with the columns :data:`.contract.EXCEPTION_COLUMNS` and
:data:`.contract.LINK_COLUMNS`; the core concatenates them in stage order. Every result dataclass
documents the columns of its frames; :func:`.contract.expect` checks them when ``LTC_RECON_CHECK``
is set (the test suite sets it).
"""
