"""`cdp init DATA_FILES...`: a starting tenant config written from the data files themselves.

For each file it reads the header and a sample of rows, then suggests a source name, a kind
(customers | transactions | transaction_items | products) and a semantic tag per column:

* **reading** (`read_sample`): CSV as `cdp run` reads it (`source_files`: a BOM, else UTF-8,
  else the legacy code page detected; the header's delimiter), or Parquet; the first
  `SAMPLE_ROWS` rows, as text.
* **name rules** (`NAME_RULES`): the common names of each tag in English, German, French,
  Spanish, Italian and Dutch, matched on the folded column name (`FirstName`, `first_name`,
  `Vorname`, `Prénom` -> `first name`, `vorname`, `prenom`), with person prefixes stripped
  (`customer_email`, `mailing_address_city`) and those of someone else discounted
  (`employer_city`).
* **value rules** (`value_scores`): emails, phones (phonenumbers, in the file's country), dates
  (birth dates are decades apart, timestamps recent), postcodes and states of the country,
  countries (pycountry), genders, given names and surnames (Faker's name lists of several
  countries), street lines, social security numbers, ids (unique per row: a pk), amounts,
  quantities; and across files, a column whose values are another file's key (customer-pk with
  `customer_source`, the order-id of order lines, a product-id). Values override a misleading
  name and tag a column whose name means nothing (`col1`, `field_7`).
* **kind**: the kind whose tags fit the columns best (its required tags most of all), helped by
  the file name (`orders.csv`, `kunden.csv`).
* **country**: `--country`, else the data's (a country column, +international phones, states,
  postcodes, the header's language); a source whose records are of another country than the
  tenant's gets its own `country:`.
* **writing** (`render_config`): YAML with relative paths; what is unsure carries a comment
  (`# unsure: phone, or email (its name)`), untagged columns are listed in a comment. The
  result passes `load_config`.

The package: reading.py -> names.py, values.py -> files.py -> writing.py.
"""

from cdp.onboarding.reading import InitError, read_sample
from cdp.onboarding.names import name_scores
from cdp.onboarding.files import guess_files
from cdp.onboarding.writing import as_mapping, init_config, render_config, summary

__all__ = ["InitError", "as_mapping", "guess_files", "init_config", "name_scores", "read_sample", "render_config", "summary"]
