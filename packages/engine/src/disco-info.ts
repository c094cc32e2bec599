// XEP-0030 disco#info as data (ours and what peers announce), and so XEP-0115 caps input.
export interface DiscoIdentity {
  category: string;
  type: string;
  lang?: string;
  name?: string;
}
export interface DiscoForm {
  formType: string;
  fields: Record<string, string[]>;
}
export interface DiscoInfo {
  identities: DiscoIdentity[];
  features: string[];
  forms: DiscoForm[];
}
