-- A composite parameter whose last component is a quantity (Observation's component-code-value-quantity,
-- code-value-quantity, combo-code-value-quantity; Questionnaire's context-type-quantity) is searched with
-- the quantity's prefixes and units (`8480-6$gt100|http://unitsofmeasure.org|mm[Hg]`), so its quantity is
-- indexed as a quantity row, beside the key of its other components (src/search/extract.ts). NULL on the
-- rows of quantity parameters. Composites of this kind written before this migration were not indexed at
-- all: `npm run reindex` indexes them. A nullable column without a default: no table rewrite.
ALTER TABLE search_quantity ADD COLUMN composite_key text;
