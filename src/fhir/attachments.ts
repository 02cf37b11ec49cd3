import { createHash } from 'node:crypto';
import type { Attachment, DocumentReference, Resource } from 'fhir/r4';
import { FhirError, type Issue } from './outcome.ts';

/** What an attachment is checked against: a stored Binary's media type, and its content's size and SHA-1. */
export interface BinaryFacts {
  contentType?: string;
  size: number;
  /** SHA-1 of the content, base64. */
  hash: string;
}

/**
 * Reads what is known of a stored Binary by id (in the writer's transaction), undefined when there is
 * none. Its bytes need not be read: the store keeps their size and hash.
 */
export type BinaryReader = (id: string) => Promise<BinaryFacts | undefined>;

/**
 * A DocumentReference's attachments with their `size` and `hash` (R4 Attachment: SHA-1 of the data,
 * base64) checked against the content when given, and filled in when absent. The content is the inline
 * `data`, or the Binary that `url` names on this server (the IHE MHD provide-bundle shape). A size or hash
 * that does not match the content, or a url to a Binary that does not exist, is refused (422).
 */
export async function completeAttachments(resource: Resource, readBinary: BinaryReader): Promise<Resource> {
  if (resource.resourceType !== 'DocumentReference') return resource;
  const document = resource as DocumentReference;
  const issues: Issue[] = [];
  const content = await Promise.all(
    document.content.map(async (item, index) => ({
      ...item,
      attachment: await completeAttachment(item.attachment, `DocumentReference.content[${index}].attachment`, readBinary, issues),
    })),
  );
  if (issues.length > 0) throw new FhirError(422, issues);
  return { ...document, content } as DocumentReference;
}

async function completeAttachment(attachment: Attachment, path: string, readBinary: BinaryReader, issues: Issue[]): Promise<Attachment> {
  let content: BinaryFacts;
  if (attachment.data !== undefined) {
    const bytes = Buffer.from(attachment.data, 'base64');
    content = { size: bytes.length, hash: createHash('sha1').update(bytes).digest('base64') };
  } else {
    const binaryId = attachment.url?.match(/(?:^|\/)Binary\/([A-Za-z0-9\-.]{1,64})$/)?.[1];
    if (binaryId === undefined) return attachment; // content held elsewhere: nothing to check here
    const binary = await readBinary(binaryId);
    if (!binary) {
      issues.push({ code: 'not-found', diagnostics: `${path}.url: Binary/${binaryId} does not exist on this server`, expression: [`${path}.url`] });
      return attachment;
    }
    content = binary;
    if (attachment.contentType && binary.contentType && attachment.contentType.split(';')[0] !== binary.contentType.split(';')[0]) {
      issues.push({ code: 'value', diagnostics: `${path}.contentType: '${attachment.contentType}' but Binary/${binaryId} is '${binary.contentType}'`, expression: [`${path}.contentType`] });
    }
  }
  const { size, hash } = content;
  if (attachment.size !== undefined && attachment.size !== size) {
    issues.push({ code: 'value', diagnostics: `${path}.size: ${attachment.size} bytes stated, the content has ${size}`, expression: [`${path}.size`] });
  }
  if (attachment.hash !== undefined && attachment.hash !== hash) {
    issues.push({ code: 'value', diagnostics: `${path}.hash: '${attachment.hash}' is not the SHA-1 of the content ('${hash}')`, expression: [`${path}.hash`] });
  }
  return { ...attachment, size, hash };
}
