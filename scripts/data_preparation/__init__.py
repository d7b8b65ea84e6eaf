"""The parts of ``scripts/prepare_data.py``: one module per dataset (div2k, benchmark, hazy, reside), each with
its subcommand's parser (``add_parser``) and work, and ``common`` for what they share."""
